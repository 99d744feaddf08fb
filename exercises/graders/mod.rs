//! The graders: one module per exercise, named like it, each left out when its exercise is
//! skipped (`skip_<name>`, see `build.rs`). Each checks the learner's functions
//! against tunelab's own implementation on random inputs and, where a backward is asked for,
//! against central differences. `tunelab exercises verify` reads the test names
//! (`graders::<exercise>::<check>`) to score each exercise.

#[cfg(not(skip_adamw))]
mod adamw;
#[cfg(not(skip_bitfit))]
mod bitfit;
#[cfg(not(skip_bottleneck_adapter))]
mod bottleneck_adapter;
#[cfg(not(skip_bradley_terry))]
mod bradley_terry;
#[cfg(not(skip_causal_attention))]
mod causal_attention;
#[cfg(not(skip_causal_lm_loss))]
mod causal_lm_loss;
#[cfg(not(skip_clip_grad_norm))]
mod clip_grad_norm;
#[cfg(not(skip_cross_entropy))]
mod cross_entropy;
#[cfg(not(skip_dora_weight))]
mod dora_weight;
#[cfg(not(skip_dpo_loss))]
mod dpo_loss;
#[cfg(not(skip_early_stopping))]
mod early_stopping;
#[cfg(not(skip_grad_accumulation))]
mod grad_accumulation;
#[cfg(not(skip_grpo_advantages))]
mod grpo_advantages;
#[cfg(not(skip_grpo_clipped))]
mod grpo_clipped;
#[cfg(not(skip_ia3_fold))]
mod ia3_fold;
#[cfg(not(skip_instruction_labels))]
mod instruction_labels;
#[cfg(not(skip_kv_cache))]
mod kv_cache;
#[cfg(not(skip_label_smoothing))]
mod label_smoothing;
#[cfg(not(skip_layer_norm_backward))]
mod layer_norm_backward;
#[cfg(not(skip_left_padded_generation))]
mod left_padded_generation;
#[cfg(not(skip_lora_backward))]
mod lora_backward;
#[cfg(not(skip_lora_finetune))]
mod lora_finetune;
#[cfg(not(skip_lora_forward))]
mod lora_forward;
#[cfg(not(skip_lora_merge))]
mod lora_merge;
#[cfg(not(skip_lora_params))]
mod lora_params;
#[cfg(not(skip_memory_estimate))]
mod memory_estimate;
#[cfg(not(skip_nf4))]
mod nf4;
#[cfg(not(skip_padding_masks))]
mod padding_masks;
#[cfg(not(skip_prefix_kv))]
mod prefix_kv;
#[cfg(not(skip_rslora_scale))]
mod rslora_scale;
#[cfg(not(skip_soft_prompt))]
mod soft_prompt;
#[cfg(not(skip_softmax))]
mod softmax;
#[cfg(not(skip_span_loss))]
mod span_loss;
#[cfg(not(skip_ties_merge))]
mod ties_merge;
#[cfg(not(skip_warmup_cosine))]
mod warmup_cosine;
#[cfg(not(skip_word_labels))]
mod word_labels;

use approx::abs_diff_eq;
use ndarray::{Array, ArrayD, Dimension, ShapeBuilder};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tunelab::nn::{Config, Transformer};
use tunelab::{Grads, ParamStore, Tape, Var};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Standard-normal values of the given shape.
pub fn randn<Sh: ShapeBuilder>(shape: Sh, rng: &mut StdRng) -> Array<f64, Sh::Dim> {
    Array::random_using(shape, StandardNormal, rng)
}

/// Fails unless `got` and `want` have the same shape and agree to `tol`, relative to the size of
/// the expected value (absolute below 1): both are divided by max(|want|, 1) and compared with
/// approx's absolute difference.
pub fn assert_close<D: Dimension>(what: &str, got: &Array<f64, D>, want: &Array<f64, D>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: wrong shape");
    let scale = want.mapv(|w| w.abs().max(1.0));
    let (got_scaled, want_scaled) = (got / &scale, want / &scale);
    if !abs_diff_eq!(got_scaled, want_scaled, epsilon = tol) {
        // The largest scaled error, NaN counted as infinite, for the learner.
        let err = (&got_scaled - &want_scaled).iter().fold(0.0, |m: f64, e| {
            if e.is_nan() {
                f64::INFINITY
            } else {
                m.max(e.abs())
            }
        });
        panic!(
            "{what}: off by {err:.2e} (tolerance {tol:.0e})\n  yours: {got:.5}\n  tunelab: {want:.5}"
        );
    }
}

/// Fails if the code of an exercise (its comments aside) names tunelab or the graders: an
/// exercise graded against tunelab's implementation must compute the answer itself, not call
/// that implementation. `source` is the file's text, `include_str!`'d by its grader.
pub fn assert_written_without_tunelab(exercise: &str, source: &str) {
    for (i, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for name in ["tunelab", "graders"] {
            assert!(
                !code.contains(name),
                "{exercise}, line {}: the exercise uses `{name}`; write it with std and ndarray \
                 only\n  {}",
                i + 1,
                line.trim()
            );
        }
    }
}

/// Central differences (f(x + h) − f(x − h)) / 2h of a scalar function, element by element.
pub fn numeric_grad<D: Dimension>(
    x: &Array<f64, D>,
    f: impl Fn(&Array<f64, D>) -> f64,
) -> Array<f64, D> {
    const H: f64 = 1e-5;
    let mut probe = x.clone();
    let mut g = Array::zeros(x.raw_dim());
    for (i, gi) in g.iter_mut().enumerate() {
        let x0 = x.iter().nth(i).copied().expect("in range");
        *probe.iter_mut().nth(i).expect("in range") = x0 + H;
        let up = f(&probe);
        *probe.iter_mut().nth(i).expect("in range") = x0 - H;
        let down = f(&probe);
        *probe.iter_mut().nth(i).expect("in range") = x0;
        *gi = (up - down) / (2.0 * H);
    }
    g
}

/// Runs `f` on a tape whose inputs are trainable parameters and returns its output and the
/// gradient of each input: of the output itself when `weights` is `None` (a loss), else of
/// Σ output ⊙ weights (so dL/d output = weights).
pub fn on_tape(
    inputs: &[ArrayD<f64>],
    weights: Option<&ArrayD<f64>>,
    f: impl FnOnce(&mut Tape<'_, f64>, &[Var]) -> Var,
) -> (ArrayD<f64>, Vec<ArrayD<f64>>) {
    let mut store = ParamStore::new();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| store.add(format!("x{i}"), x.clone(), true).expect("unique"))
        .collect();
    let mut tape = Tape::new(&store);
    let vars: Vec<Var> = ids.iter().map(|&id| tape.param(id)).collect();
    let y = f(&mut tape, &vars);
    let loss = match weights {
        None => y,
        Some(w) => {
            let w = tape.constant(w.clone());
            let yw = tape.mul(y, w).expect("same shape");
            tape.sum_all(yw).expect("sum")
        }
    };
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).expect("backward");
    let grads = ids
        .iter()
        .zip(inputs)
        .map(|(&id, x)| {
            grads
                .get(id)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(x.raw_dim()))
        })
        .collect();
    (tape.value(y).to_owned(), grads)
}

/// A small randomly initialised GPT (V 32, C 8, NH 2, `layers` blocks, no dropout).
pub fn tiny_gpt(layers: usize) -> (Transformer, ParamStore<f64>) {
    let mut config = Config::gpt(32, 8, 2, layers, 16);
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 7).expect("valid config");
    (model, store)
}

/// A small randomly initialised BERT (V 32, C 8, NH 2, 2 blocks).
pub fn tiny_bert() -> (Transformer, ParamStore<f64>) {
    let mut store = ParamStore::new();
    let model = Transformer::new(Config::bert(32, 8, 2, 2, 16), &mut store, 7).expect("valid");
    (model, store)
}

/// The source check itself (its tests name no exercise, so `verify` scores none with them).
mod source_check {
    use super::assert_written_without_tunelab;

    #[test]
    #[should_panic(expected = "line 2: the exercise uses `tunelab`")]
    fn an_exercise_that_calls_tunelab_fails() {
        let source = "pub fn group_advantages(rewards: &[f64], g: usize) -> Vec<f64> {\n    \
                      ::tunelab::loss::grpo::group_advantages(rewards, g, Default::default())\n}\n";
        assert_written_without_tunelab("grpo_advantages", source);
    }

    #[test]
    #[should_panic(expected = "the exercise uses `graders`")]
    fn an_exercise_that_borrows_the_graders_tape_fails() {
        assert_written_without_tunelab("dpo_loss", "use crate::graders::on_tape;\n");
    }

    #[test]
    fn comments_may_name_tunelab() {
        let source = "//! Graded against tunelab's DPO loss.\n/// Like `tunelab::loss`.\n\
                      pub fn f() -> f64 {\n    1.0 // not tunelab's\n}\n";
        assert_written_without_tunelab("dpo_loss", source);
    }
}
