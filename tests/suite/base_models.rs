//! The shipped base models load and reach the validation loss recorded in models/README.md.

use std::path::Path;
use tunelab::data::lm::validation_batches;
use tunelab::data::tokenizer::Tokenizer;
use tunelab::io::checkpoint;
use tunelab::train::pretrain::{validation_loss, Base};

/// The validation loss column of `name`'s row in models/README.md.
fn recorded_loss(readme: &str, name: &str) -> f64 {
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row for {name} in models/README.md"));
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    cols[4]
        .parse()
        .unwrap_or_else(|_| panic!("validation loss column of {name}: {:?}", cols[4]))
}

#[test]
fn shipped_models_reach_their_recorded_validation_loss() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for base in [Base::GptTiny, Base::BertTiny] {
        let dir = root.join(base.name());
        let (model, store) = checkpoint::load::<f32>(&dir).unwrap();
        let tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        assert_eq!(model.config.causal, base == Base::GptTiny);
        let batches = validation_batches(&tok, base.causal(), model.config.max_len).unwrap();
        let loss = validation_loss(&model, &store, &tunelab::nn::NoHooks, &batches).unwrap();
        let want = recorded_loss(&readme, base.name());
        let rel = (loss - want).abs() / want;
        assert!(
            rel < 0.02,
            "{}: validation loss {loss:.4}, README records {want:.4} ({:.2}% off)",
            base.name(),
            rel * 100.0
        );
        // Better than a uniform guess over the vocabulary (loss ln V) by at least one nat.
        assert!(
            loss < (tok.vocab_size() as f64).ln() - 1.0,
            "{}: loss {loss} is near chance",
            base.name()
        );
    }
}

/// Seed section 1: fine-tuning the pre-trained base beats training the same architecture from
/// scratch on the same small task data, with the same budget: 40 full fine-tuning steps for
/// gpt-tiny, 120 for bert-tiny. Measured over three seeds (data order, head and fresh weights),
/// gpt-tiny's lead at 40 steps was 0.12 to 0.26 (0.13 at 30); bert-tiny's at 120 steps was 0.065
/// to 0.19, while at 40 to 80 steps it was within the noise of 200 validation examples (-0.035 to
/// +0.10), so bert-tiny keeps the longer budget.
///
/// bert-tiny is read through mean pooling: masked-LM pre-training trains every token's state
/// but never [CLS] or a pooler (BERT's came from next-sentence prediction). Through [CLS] its
/// pre-training did not help in this budget (measured: 0.570 pre-trained vs 0.640 from scratch
/// at lr 5e-4; mean pooling 0.690 vs 0.590).
fn pretrained_base_beats_training_from_scratch(name: &str, steps: usize) {
    use tunelab::data::tasks::Task;
    use tunelab::lab::finetune::{load_base, prepare, task_data};
    use tunelab::nn::Transformer;
    use tunelab::peft::MethodSpec;
    use tunelab::train::args::Strategy;
    use tunelab::train::trainer::{train, Split, TrainTask, Training};
    use tunelab::train::TrainingArgs;

    let score = |name: &str, pretrained: bool, steps: usize| -> f64 {
        let mut base = load_base(name).unwrap();
        if !pretrained {
            let mut fresh = tunelab::ParamStore::new();
            base.model = Transformer::new(base.model.config.clone(), &mut fresh, 7).unwrap();
            base.store = fresh;
        }
        let (data, world) = task_data(Task::Sentiment, None, Some(512)).unwrap();
        let (mut tm, method) = prepare(
            &mut base,
            Task::Sentiment,
            data,
            world,
            &MethodSpec::Full { last_k: None },
            42,
        )
        .unwrap();
        if let tunelab::train::task::Head::Sequence(head) = &mut tm.head {
            if !base.model.config.causal {
                head.pooling = tunelab::nn::Pooling::Mean;
            }
        }
        let dir = crate::common::temp_dir(&format!("scratch-{pretrained}"));
        let args = TrainingArgs {
            output_dir: dir.clone(),
            max_steps: Some(steps),
            batch_size: 16,
            learning_rate: 5e-4,
            eval_strategy: Strategy::No,
            ..TrainingArgs::default()
        };
        train(Training::new(&args, &tm, &mut base.store).hooks(method.as_ref())).unwrap();
        let _ = std::fs::remove_dir_all(dir);
        TrainTask::<f32>::evaluate(
            &tm,
            &base.store,
            method.as_ref(),
            Split::Validation,
            200,
            32,
        )
        .unwrap()["accuracy"]
    };
    let (pre, scratch) = (score(name, true, steps), score(name, false, steps));
    eprintln!("{name}: sentiment validation accuracy after {steps} full fine-tuning steps: pre-trained {pre:.3}, from scratch {scratch:.3}");
    assert!(
        pre > scratch + 0.05,
        "{name}: pre-trained {pre:.3} vs from scratch {scratch:.3}"
    );
}

// One test per base, so the two run side by side.
#[test]
fn gpt_tiny_pretrained_beats_training_from_scratch() {
    pretrained_base_beats_training_from_scratch("gpt-tiny", 40);
}

#[test]
fn bert_tiny_pretrained_beats_training_from_scratch() {
    pretrained_base_beats_training_from_scratch("bert-tiny", 120);
}
