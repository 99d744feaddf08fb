//! `tunelab compare --quick`: the claims its table supports hold in the quick run.

use tunelab::data::tasks::Task;
use tunelab::lab::compare::{compare, default_entries, table, CompareOptions, Row};

#[test]
fn compare_quick_measures_what_the_table_claims() {
    let mut opts = CompareOptions::new("gpt-tiny", Task::Sentiment).quick();
    opts.only = vec!["full".into(), "lora".into(), "prompt".into()];
    opts.out_dir = crate::common::temp_dir("compare");
    let rows = compare(&opts, &default_entries(opts.task, vec![]).unwrap(), &mut ()).unwrap();
    // Methods train side by side, each in its own directory.
    for dir in ["full", "lora-r-8-q-v", "prompt-P-10"] {
        assert!(
            opts.out_dir.join(dir).join("adapter").is_dir(),
            "no adapter in {dir}"
        );
    }
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    let get = |name: &str| -> &Row { rows.iter().find(|r| r.method.starts_with(name)).unwrap() };
    let (full, lora, prompt) = (get("full"), get("lora"), get("prompt"));
    assert_eq!(rows.len(), 3);

    // Trainable parameters: all for full fine-tuning, a few percent for LoRA, less for prompts.
    assert_eq!(full.trainable_params, full.total_params);
    assert!(lora.trainable_pct < 5.0, "LoRA {}%", lora.trainable_pct);
    assert!(prompt.trainable_params < lora.trainable_params);

    // Memory: the frozen base holds no gradients and no optimizer state.
    assert_eq!(full.memory.gradients, 4 * full.trainable_params);
    assert_eq!(full.memory.optimizer, 2 * 4 * full.trainable_params);
    assert_eq!(lora.memory.gradients, 4 * lora.trainable_params);
    assert!(lora.memory.optimizer * 10 < full.memory.optimizer);
    assert!(full.memory.activations > 0 && lora.memory.activations > 0);

    // Storage: a LoRA adapter is a small fraction of the full model's file.
    assert!(lora.adapter_bytes * 10 < full.adapter_bytes);

    // Forgetting: LoRA starts as the identity and moves little; full fine-tuning rewrites the
    // shared embeddings and forgets more.
    assert!(full.forgetting.delta() > lora.forgetting.delta());
    assert_eq!(full.forgetting.before, lora.forgetting.before);

    // Every row is measured: step times, scores in [0, 1], the low-data column, the loss curve.
    for r in &rows {
        assert!(r.median_step_ms > 0.0);
        assert!((0.0..=1.0).contains(&r.test_score));
        assert!((0.0..=1.0).contains(&r.low_data_test_score.unwrap()));
        assert_eq!(r.train_losses.len(), opts.steps);
    }

    let t = table(&opts, &rows);
    assert_eq!(t.lines().filter(|l| l.starts_with("lora")).count(), 1);
    let json: serde_json::Value = serde_json::to_value(&rows).unwrap();
    assert_eq!(json[1]["method"], "lora r=8 q,v");
}
