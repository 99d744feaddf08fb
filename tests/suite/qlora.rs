//! The base stored in fewer bits (`--base-dtype bf16|nf4`): logits against transformers running
//! bitsandbytes' own round trip of the same weights, the quantised matmul against a dense one,
//! the stored size, and LoRA training on top (QLoRA).
//!
//! `tests/fixtures/qlora_golden.safetensors` is written by `tools/qlora_golden.py`.
//! `cargo test --test suite qlora:: -- --nocapture` prints the max differences.

use ndarray::{Array2, ArrayD, Ix2};
use std::path::{Path, PathBuf};
use tunelab::autodiff::ParamStore;
use tunelab::io::{hf, safetensors};
use tunelab::kernels::quant::QuantWeight;
use tunelab::nn::quantize::{quantize_base, BaseDtype};
use tunelab::nn::{Input, NoHooks};
use tunelab::{Grads, Tape};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

const DTYPES: [(&str, BaseDtype); 4] = [
    ("f32", BaseDtype::F32),
    ("bf16", BaseDtype::Bf16),
    (
        "nf4",
        BaseDtype::Nf4 {
            double_quant: false,
        },
    ),
    ("nf4dq", BaseDtype::Nf4 { double_quant: true }),
];

/// Every position's logits of `ids` (GPT-2: the LM head; BERT: the masked-LM head).
fn logits(m: &hf::Loaded<f32>, ids: &Array2<usize>) -> ArrayD<f32> {
    let mut tape = Tape::inference(&m.store);
    let hidden = m
        .model
        .forward(&mut tape, &NoHooks, &Input::new(ids.view()))
        .unwrap();
    let out = m.model.lm_logits(&mut tape, &NoHooks, hidden).unwrap();
    let v = tape.value(out).to_owned();
    let shape = v.shape().to_vec();
    v.into_shape_with_order(vec![shape[1], shape[2]]).unwrap()
}

#[test]
fn logits_on_a_quantised_base_match_transformers_on_bitsandbytes_weights() {
    let golden = safetensors::load::<f32>(&root().join("tests/fixtures/qlora_golden.safetensors"))
        .unwrap()
        .tensors;
    let get = |name: &str| {
        golden
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in the fixture"))
            .1
            .clone()
    };
    let models = [
        ("gpt2_tiny", root().join("tests/fixtures/hf/gpt2-tiny")),
        ("gpt_tiny", root().join("models/gpt-tiny")),
        ("bert_tiny", root().join("tests/fixtures/hf/bert-tiny")),
    ];
    let mut worst = 0.0f32;
    for (key, dir) in &models {
        let ids = get(&format!("{key}.input_ids"))
            .into_dimensionality::<Ix2>()
            .unwrap()
            .mapv(|x| x as usize);
        for (name, dtype) in DTYPES {
            let mut m = hf::load::<f32>(dir).unwrap();
            let report = quantize_base(&m.model, &mut m.store, dtype).unwrap();
            assert_eq!(report.is_some(), dtype != BaseDtype::F32);
            let ours = logits(&m, &ids);
            let theirs = get(&format!("{key}.logits.{name}"));
            assert_eq!(ours.shape(), theirs.shape(), "{key} {name}");
            let diff = ours
                .iter()
                .zip(theirs.iter())
                .fold(0.0f32, |d, (a, b)| d.max((a - b).abs()));
            let scale = theirs.iter().fold(0.0f32, |d, x| d.max(x.abs()));
            println!(
                "{key} {name}: max |tunelab − transformers| {diff:.3e} (logits up to {scale:.2})"
            );
            worst = worst.max(diff);
            assert!(diff < 1e-5, "{key} {name}: max difference {diff:e}");
            // The quantisation itself changes the logits: the test would notice a no-op.
            if dtype != BaseDtype::F32 {
                let plain = get(&format!("{key}.logits.f32"));
                let moved = ours
                    .iter()
                    .zip(plain.iter())
                    .fold(0.0f32, |d, (a, b)| d.max((a - b).abs()));
                assert!(moved > 1e-4, "{key} {name} equals f32 ({moved:e})");
            }
        }
    }
    println!("worst max difference over 3 models × 4 dtypes: {worst:.3e}");
}

#[test]
fn the_quantised_matmul_equals_a_dense_one_forward_and_backward() {
    // In f64, with a weight whose rows straddle NF4 blocks (40 values a row, blocks of 64) and
    // more rows than one tile (150 > 64).
    let (out, inp) = (150, 40);
    let w = Array2::from_shape_fn((out, inp), |(i, j)| ((i * inp + j) as f32 * 0.731).sin());
    for q in [
        QuantWeight::nf4(w.view(), false, 64, true),
        QuantWeight::bf16(w.view(), false),
    ] {
        let dense = q.dequantize().mapv(|x| x as f64);
        let mut store = ParamStore::<f64>::new();
        let x0 = ArrayD::from_shape_fn(vec![2, 3, inp], |i| {
            ((i[0] * 7 + i[1] * 3 + i[2]) as f64 * 0.113).cos()
        });
        let x = store.add("x", x0, true).unwrap();
        let r = ArrayD::from_shape_fn(vec![2, 3, out], |i| (i[0] + 2 * i[1] + i[2]) as f64 * 0.01);
        let run = |quantised: bool| {
            let mut tape = Tape::new(&store);
            let xv = tape.param(x);
            let y = if quantised {
                tape.matmul_quantized(xv, std::sync::Arc::new(q.clone()))
                    .unwrap()
            } else {
                let wv = tape.constant(dense.clone().into_dyn());
                tape.matmul_t(xv, wv, false, true).unwrap()
            };
            let rv = tape.constant(r.clone());
            let yr = tape.mul(y, rv).unwrap();
            let loss = tape.sum(yr, &[0, 1, 2], false).unwrap();
            let mut grads = Grads::new(&store);
            tape.backward(loss, &mut grads).unwrap();
            (
                tape.value(y).to_owned(),
                grads.get(x).expect("x has a gradient").clone(),
            )
        };
        let (yq, gq) = run(true);
        let (yd, gd) = run(false);
        let dy = (&yq - &yd).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
        let dg = (&gq - &gd).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
        println!("{}: forward {dy:.2e}, input gradient {dg:.2e}", q.kind());
        assert!(dy < 1e-12 && dg < 1e-12, "{}: {dy:e} {dg:e}", q.kind());
    }
}

#[test]
fn an_nf4_base_is_stored_in_about_4_bits_and_trains_lora_on_top() {
    use tunelab::data::tasks::Task;
    use tunelab::lab::finetune::{load_base, prepare, task_data};
    use tunelab::peft::MethodSpec;

    let f32_base = load_base("gpt-tiny").unwrap();
    let f32_bytes = f32_base.store.bytes();
    let mut base = load_base("gpt-tiny").unwrap();
    base.quantize(BaseDtype::Nf4 { double_quant: true })
        .unwrap();
    let q = base.quant.clone().expect("quantised");
    println!("{}", q.summary());
    // 4 bits a value, 8 bits per 64-value block, one f32 per 256 blocks and the offset.
    assert!(
        (4.12..4.14).contains(&q.bits_per_value),
        "{}",
        q.bits_per_value
    );
    assert_eq!(q.values, 16 * 128 * 128 + 4 * 2 * 128 * 512);
    assert!(q.relative_error > 0.01 && q.relative_error < 0.15, "{q:?}");
    assert_eq!(
        f32_bytes - base.store.bytes(),
        q.bytes_f32 - q.bytes,
        "the store counts the quantised weights at their stored size"
    );
    assert_eq!(base.store.num_params(), f32_base.store.num_params());

    // Full fine-tuning is refused; LoRA trains only its own parameters.
    let (data, world) = task_data(Task::Sentiment, None, Some(64)).unwrap();
    let full = prepare(
        &mut base.clone(),
        Task::Sentiment,
        data.clone(),
        world.clone(),
        &MethodSpec::Full { last_k: None },
        42,
    );
    let err = full.err().expect("refused").to_string();
    assert!(err.contains("--base-dtype"), "{err}");
    let lora = MethodSpec::Lora(tunelab::peft::lora::compare_config());
    let (_tm, method) = prepare(&mut base, Task::Sentiment, data, world, &lora, 42).unwrap();
    for lin in base.model.block_linears() {
        assert!(base.store.quantized(lin.weight).is_some());
        assert!(!base.store.is_trainable(lin.weight));
    }
    for &p in method.params() {
        assert!(base.store.is_trainable(p), "{}", base.store.name(p));
    }
    for (id, p) in base.store.iter() {
        if p.trainable {
            assert!(
                method.params().contains(&id) || !p.name.starts_with("h."),
                "{} trains",
                p.name
            );
        }
    }
}
