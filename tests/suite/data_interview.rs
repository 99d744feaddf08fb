//! Interview questions 31–35 (knowledge, data and forgetting) in quick mode, and the library
//! pieces they rest on: BM25, packing with the document mask, replay, label flipping and label
//! smoothing on a task.

use tunelab::autodiff::{Tape, IGNORE_INDEX};
use tunelab::data::encode::Target;
use tunelab::data::packing::{pack, padded_pad_share};
use tunelab::data::retrieval::{words, Bm25};
use tunelab::data::tasks::Task;
use tunelab::lab::evidence::{report, Judged, Mode};
use tunelab::lab::interview::{self, data};
use tunelab::lab::runs::{prepare_run, Run};
use tunelab::peft::MethodSpec;
use tunelab::train::replay::Replay;
use tunelab::train::trainer::{MicroBatch, TrainTask};
use tunelab::Float;

const TWO: usize = 2;

#[test]
fn bm25_scores_by_the_formula_and_ranks_rare_words_first() {
    assert_eq!(
        words("Anna's flat, in Hanoi!"),
        ["anna", "s", "flat", "in", "hanoi"]
    );
    let passages = [
        "The cat sat on the mat.",
        "Anna Lee lives in Paris. She likes pho.",
        "Ben Cruz lives in Oslo.",
    ];
    let index = Bm25::new(&passages);
    assert_eq!(index.len(), 3);
    // idf: "lives" is in 2 of 3 passages, "anna" in 1.
    let idf = |n: f64| (1.0 + (3.0 - n + 0.5) / (n + 0.5)).ln();
    assert!((index.idf("lives") - idf(2.0)).abs() < 1e-12);
    assert!((index.idf("anna") - idf(1.0)).abs() < 1e-12);
    // Passage 1 has 8 words, the mean is (6 + 8 + 5) / 3: score by hand for "anna lives".
    let norm = 1.2 * (1.0 - 0.75 + 0.75 * 8.0 / (19.0 / 3.0));
    let by_hand = (idf(1.0) + idf(2.0)) * 2.2 / (1.0 + norm);
    assert!((index.score("anna lives", 1) - by_hand).abs() < 1e-12);
    let hits = index.search("Where does Anna Lee live?", 3);
    assert_eq!(hits[0].0, 1, "{hits:?}");
    // A passage sharing no word with the query is not returned.
    assert!(index.search("zebra", 3).is_empty());
    assert!(hits.iter().all(|h| h.0 != 0), "{hits:?}");
}

#[test]
fn packing_places_examples_restarts_positions_and_masks_first_labels() {
    let ex = |n: usize, base: u32| -> (Vec<u32>, Vec<i64>) {
        let ids: Vec<u32> = (0..n as u32).map(|i| base + i).collect();
        let labels = ids.iter().map(|&x| x as i64).collect();
        (ids, labels)
    };
    let examples = vec![ex(3, 10), ex(4, 20), ex(5, 30)];
    let p = pack(&examples, 8, 0).unwrap();
    // 3 + 4 fit in the first row; 5 starts the second.
    assert_eq!(p.placed, vec![(0, 0, 3), (0, 3, 4), (1, 0, 5)]);
    assert_eq!(p.ids.dim(), (2, 8));
    assert_eq!(p.positions.row(0).to_vec(), vec![0, 1, 2, 0, 1, 2, 3, 0]);
    assert_eq!(p.documents.row(0).to_vec(), vec![0, 0, 0, 1, 1, 1, 1, 2]);
    assert_eq!(p.labels[[0, 0]], IGNORE_INDEX);
    assert_eq!(p.labels[[0, 3]], IGNORE_INDEX);
    assert_eq!(p.labels[[0, 4]], 21);
    assert!(!p.mask[[0, 7]] && p.mask[[0, 6]]);
    // 4 pad tokens of 16.
    assert!((p.pad_share() - 4.0 / 16.0).abs() < 1e-12);
    // Padded in batches of 2 to the longest: (4 + 4) + (5) of 8 + 5 → 1 − 12/13.
    assert!((padded_pad_share(&[3, 4, 5], 2) - (1.0 - 12.0 / 13.0)).abs() < 1e-12);
    // An example longer than a row is an error naming it.
    let err = pack(&[ex(9, 0)], 8, 0).unwrap_err().to_string();
    assert!(err.contains("example 0 has 9 tokens"), "{err}");
}

#[test]
fn replay_checks_its_share_and_mixes_lm_windows_into_the_loss() {
    let run = Run::new(
        Task::Sentiment,
        MethodSpec::Full { last_k: None },
        1e-3,
        1,
        8,
    );
    let (base, tm, _method) = prepare_run(&run).unwrap();
    let docs = tunelab::data::world::World::generate(0).corpus(40, 1);
    let windows = tunelab::data::lm::windows(&base.tok, &docs, true, 32).unwrap();
    assert!(Replay::new(&tm, &windows, 1.5, 0).is_err());
    assert!(Replay::new(&tm, &[], 0.3, 0).is_err());
    let r0 = Replay::new(&tm, &windows, 0.0, 0).unwrap();
    let r3 = Replay::new(&tm, &windows, 0.3, 0).unwrap();
    assert_eq!(
        (r0.replayed(16), r3.replayed(16), r3.replayed(8)),
        (0, 5, 2)
    );
    let idx: Vec<usize> = (0..8).collect();
    let loss = |task: &dyn TrainTask<f32>| -> (f64, usize) {
        let mut tape = Tape::inference(&base.store);
        let (l, n) = task
            .loss(&mut tape, &tunelab::nn::NoHooks, &MicroBatch::of(&idx))
            .unwrap();
        (tape.scalar(l).unwrap().as_f64(), n)
    };
    let plain = loss(&tm);
    // Share 0: the task's own loss.
    assert_eq!(loss(&r0), plain);
    // Share 0.3 of 8: 6 task examples and 2 windows, weighted per example.
    let (mixed, n) = loss(&r3);
    let mut tape = Tape::inference(&base.store);
    let items: Vec<&_> = tm.train[..6].iter().collect();
    let (l6, _) = tm
        .batch_loss(&mut tape, &tunelab::nn::NoHooks, &items)
        .unwrap();
    let task6 = tape.scalar(l6).unwrap().as_f64();
    assert_eq!(n, 8);
    // The windows' LM loss is what makes the difference: recover it and check it is an LM loss.
    let lm = (8.0 * mixed - 6.0 * task6) / 2.0;
    assert!(lm > 0.1 && lm < 5.0, "replayed LM loss {lm}");
    assert!((mixed - plain.0).abs() > 1e-6);
}

#[test]
fn flipping_labels_flips_exactly_the_share_and_smoothing_changes_the_loss() {
    let run = Run::new(
        Task::Sentiment,
        MethodSpec::Full { last_k: None },
        1e-3,
        1,
        8,
    );
    let (base, mut tm, _method) = prepare_run(&run).unwrap();
    let before: Vec<Target> = tm.train.iter().map(|i| i.encoded.target.clone()).collect();
    let n = data::flip_labels(&mut tm.train, 2, 0.3, 42);
    let changed = tm
        .train
        .iter()
        .zip(&before)
        .filter(|(i, b)| i.encoded.target != **b)
        .count();
    let expected = (0.3 * tm.train.len() as f64).round() as usize;
    assert_eq!((n, changed), (expected, expected));
    let mut loss = |eps: f64| {
        tm.label_smoothing = eps;
        let items: Vec<&_> = tm.train[..8].iter().collect();
        let mut tape = Tape::inference(&base.store);
        let (l, _) = tm
            .batch_loss(&mut tape, &tunelab::nn::NoHooks, &items)
            .unwrap();
        tape.scalar(l).unwrap().as_f64()
    };
    let (plain, smooth) = (loss(0.0), loss(0.2));
    assert!((plain - smooth).abs() > 1e-4, "{plain} vs {smooth}");
}

#[test]
fn q31_retrieval_against_fine_tuning_for_facts() {
    let r = data::knowledge(Mode::Quick, TWO, &mut ()).unwrap();
    assert_eq!(r.runs.len(), TWO);
    assert_eq!(r.corpus_docs, 20_000);
    // BM25 finds a passage with the answer for most questions, trained or not.
    assert!(
        r.hit_unseen > 0.5 && r.hit_trained > 0.5,
        "{} {}",
        r.hit_trained,
        r.hit_unseen
    );
    // The pre-trained model never answers in the short form; retrieval + reading answers some.
    assert!(r.base_trained.exact_match < 0.1, "{:?}", r.base_trained);
    for run in &r.runs {
        assert!(run.rag_unseen > 0.0, "{run:?}");
        for x in [
            run.ft_trained.exact_match,
            run.ft_unseen.exact_match,
            run.rag_trained,
            run.rag_unseen,
        ] {
            assert!((0.0..=1.0).contains(&x));
        }
    }
    let j = Judged::pooled(r.seeds.clone(), r);
    let text = report(&j);
    assert!(text.contains("BM25 top passage + reader"), "{text}");
    assert!(
        j.verdict("BM25's top passage holds the answer")
            .unwrap()
            .always(),
        "{text}"
    );
}

#[test]
fn q32_kv_cache_matches_its_formula_and_the_uncached_tokens() {
    let r = data::kv_cache(Mode::Quick).unwrap();
    assert_eq!(r.cache_bytes, r.formula_bytes);
    // gpt-tiny: 4 layers, 4 heads of 32, f32: 4,096 bytes per token.
    assert_eq!(data::kv_cache_bytes(4, 4, 32, 1, 4), 4096);
    assert_eq!(r.formula_bytes, 4096 * r.tokens);
    assert_eq!(r.llama_bytes, (2u64 << 30) as f64);
    for run in &r.runs {
        assert!(run.identical, "cached and uncached generation differ");
        assert!(run.flops_uncached > run.flops_cached, "{run:?}");
    }
    let j = Judged::once(r);
    for v in j.verdicts() {
        assert!(v.always(), "{}\n{}", v.text, report(&j));
    }
}

#[test]
fn q33_packing_with_the_document_mask_keeps_every_loss() {
    let r = data::chat_packing(Mode::Quick, 1, &mut ()).unwrap();
    assert!(
        r.rendered.contains("User:") && r.rendered.contains("Assistant:"),
        "{}",
        r.rendered
    );
    assert!(r.rendered.ends_with(&r.eos));
    assert!(r.masked > 0 && r.targets > 0);
    // Packed with the mask, every example's loss is its own to 1e-6; naively it is not.
    assert!(
        r.diff_masked < 1e-6,
        "masked packing differs by {}",
        r.diff_masked
    );
    assert!(
        r.diff_naive > 1e-3,
        "naive packing differs by only {}",
        r.diff_naive
    );
    assert!(
        r.pad_packed < r.pad_padded,
        "{} vs {}",
        r.pad_packed,
        r.pad_padded
    );
    assert_eq!((r.stop_trained.len(), r.stop_untrained.len()), (1, 1));
    for x in r
        .stop_trained
        .iter()
        .chain(&r.stop_untrained)
        .chain([&r.stop_base])
    {
        assert!((0.0..=1.0).contains(x));
    }
}

#[test]
fn q34_noisy_labels_run_every_condition() {
    let r = data::noisy_labels(Mode::Quick, 1, &mut ()).unwrap();
    assert_eq!(r.rows.len(), 5);
    assert_eq!(r.row("30% flipped").unwrap().noise, 0.3);
    assert_eq!(
        r.row("30% flipped, label smoothing 0.2")
            .unwrap()
            .label_smoothing,
        0.2
    );
    for row in &r.rows {
        assert_eq!(row.accuracy.len(), 1);
        assert!((0.0..=1.0).contains(&row.accuracy[0]), "{row:?}");
    }
    let j = Judged::pooled(r.seeds.clone(), r);
    assert_eq!(j.verdicts().len(), 4, "{}", report(&j));
}

#[test]
fn q35_replay_runs_three_shares_and_measures_forgetting() {
    let r = data::replay(Mode::Quick, 1, &mut ()).unwrap();
    let shares: Vec<(f64, usize)> = r.rows.iter().map(|x| (x.share, x.replayed)).collect();
    assert_eq!(shares, vec![(0.0, 0), (0.1, 2), (0.3, 5)]);
    assert!(r.before > 0.0 && r.before.is_finite());
    for row in &r.rows {
        assert!(row.forgetting[0].is_finite(), "{row:?}");
        assert!((0.0..=1.0).contains(&row.accuracy[0]));
    }
    // Replaying a third of every batch keeps the LM loss closer to pre-training than none.
    assert!(
        r.rows[2].forgetting[0] < r.rows[0].forgetting[0],
        "{:?}",
        r.rows
    );
}

#[test]
fn questions_31_to_35_are_listed_with_vietnamese() {
    for n in 31..=35 {
        let q = interview::question(n).unwrap();
        assert!(q.question.ends_with('?'));
        let vi = data::VI.iter().find(|v| v.0 == n).expect("Vietnamese");
        assert!(!vi.1.is_empty() && !vi.2.is_empty());
    }
}
