//! The tape's contract: accumulation and zeroing, no-grad mode, tied parameters, dropout modes,
//! f32 and f64 through the same code, and errors instead of panics on bad shapes.

use approx::{abs_diff_eq, assert_abs_diff_eq};
use ndarray::{array, Array, ArrayD};
use tunelab::autodiff::{AttnMask, IGNORE_INDEX};
use tunelab::{Error, Grads, ParamStore, Tape};

fn square_loss(store: &ParamStore<f64>, grads: &mut Grads<f64>) -> f64 {
    let mut tape = Tape::new(store);
    let w = tape.param_named("w").unwrap();
    let sq = tape.square(w).unwrap();
    let loss = tape.sum_all(sq).unwrap();
    tape.backward(loss, grads).unwrap();
    tape.scalar(loss).unwrap()
}

#[test]
fn tape_gradients_accumulate_until_zeroed() {
    let mut store = ParamStore::<f64>::new();
    let w = store.add("w", array![1.0, -2.0].into_dyn(), true).unwrap();
    let mut grads = Grads::new(&store);
    square_loss(&store, &mut grads);
    assert_eq!(grads.get(w).unwrap().as_slice().unwrap(), &[2.0, -4.0]);
    square_loss(&store, &mut grads);
    assert_eq!(
        grads.get(w).unwrap().as_slice().unwrap(),
        &[4.0, -8.0],
        "a second backward adds"
    );
    grads.zero();
    assert_eq!(grads.get(w).unwrap().as_slice().unwrap(), &[0.0, 0.0]);
    assert_eq!(grads.global_norm(), 0.0);
}

#[test]
fn tape_tied_parameter_gets_both_gradients() {
    // y = w · w (the same parameter used twice, like a tied LM head): dy/dw = 2w.
    let mut store = ParamStore::<f64>::new();
    let w = store.add("w", array![3.0].into_dyn(), true).unwrap();
    let mut tape = Tape::new(&store);
    let a = tape.param(w);
    let b = tape.param(w);
    assert_eq!(a, b);
    let y = tape.mul(a, b).unwrap();
    let loss = tape.sum_all(y).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();
    assert_eq!(grads.get(w).unwrap()[0], 6.0);
}

#[test]
fn tape_no_grad_mode_records_nothing() {
    let mut store = ParamStore::<f32>::new();
    let w = store
        .add("w", Array::ones((4, 4)).into_dyn(), true)
        .unwrap();
    let mut tape = Tape::inference(&store);
    let wv = tape.param(w);
    let y = tape.matmul(wv, wv).unwrap();
    let y = tape.gelu_tanh(y).unwrap();
    assert!(!tape.requires_grad(y));
    let loss = tape.sum_all(y).unwrap();
    let mut grads = Grads::new(&store);
    assert!(tape.backward(loss, &mut grads).is_err());
}

#[test]
fn tape_dropout_is_identity_in_eval_and_seeded_in_train() {
    let mut store = ParamStore::<f32>::new();
    let w = store
        .add("w", Array::ones((50, 40)).into_dyn(), true)
        .unwrap();
    let mut eval = Tape::inference(&store);
    let x = eval.param(w);
    let y = eval.dropout(x, 0.5).unwrap();
    assert_eq!(x, y, "eval dropout adds no node");

    let run = |seed: u64| -> ArrayD<f32> {
        let mut t = Tape::new(&store);
        t.seed(seed);
        let x = t.param(w);
        let y = t.dropout(x, 0.25).unwrap();
        t.value(y).to_owned()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b, "same seed, same mask");
    assert_ne!(a, c);
    let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
    assert!(
        abs_diff_eq!(kept, 0.75, epsilon = 0.05),
        "kept fraction {kept}"
    );
    assert!(
        a.iter()
            .all(|&v| v == 0.0 || abs_diff_eq!(v, 1.0 / 0.75, epsilon = 1e-6)),
        "survivors scaled by 1/(1-p)"
    );
}

#[test]
fn tape_f32_and_f64_agree() {
    let x64 = Array::from_shape_fn((2, 3, 6), |(i, j, k)| {
        ((i * 7 + j * 3 + k) % 5) as f64 * 0.3 - 0.6
    })
    .into_dyn();
    let mut s64 = ParamStore::<f64>::new();
    s64.add("x", x64, true).unwrap();
    s64.add("g", Array::ones(6).into_dyn(), true).unwrap();
    s64.add("b", Array::zeros(6).into_dyn(), true).unwrap();
    let s32 = s64.cast::<f32>();
    fn run<F: tunelab::Float>(store: &ParamStore<F>) -> (f64, Vec<f64>) {
        let mut t = Tape::new(store);
        let (x, g, b) = (
            t.param_named("x").unwrap(),
            t.param_named("g").unwrap(),
            t.param_named("b").unwrap(),
        );
        let h = t.layer_norm(x, g, b, 1e-5).unwrap();
        let h = t.gelu_erf(h).unwrap();
        let loss = t
            .cross_entropy(h, &[0, 1, 2, 3, 4, IGNORE_INDEX], IGNORE_INDEX)
            .unwrap();
        let mut grads = Grads::new(store);
        t.backward(loss, &mut grads).unwrap();
        let gx = grads
            .get(store.id("x").unwrap())
            .unwrap()
            .iter()
            .map(|&v| tunelab::Float::as_f64(v))
            .collect();
        (tunelab::Float::as_f64(t.scalar(loss).unwrap()), gx)
    }
    let (l64, g64) = run(&s64);
    let (l32, g32) = run(&s32);
    assert_abs_diff_eq!(l64, l32, epsilon = 1e-5);
    assert_abs_diff_eq!(g64.as_slice(), g32.as_slice(), epsilon = 1e-5);
}

#[test]
fn tape_bad_shapes_are_errors_not_panics() {
    let mut store = ParamStore::<f32>::new();
    let a = store
        .add("a", Array::ones((2, 3)).into_dyn(), true)
        .unwrap();
    let b = store
        .add("b", Array::ones((4, 5)).into_dyn(), true)
        .unwrap();
    let v = store.add("v", Array::ones(7).into_dyn(), true).unwrap();
    let mut t = Tape::new(&store);
    let (a, b, v) = (t.param(a), t.param(b), t.param(v));
    let shape_error = |r: tunelab::Result<tunelab::Var>| matches!(r, Err(Error::Shape { .. }));
    let invalid = |r: tunelab::Result<tunelab::Var>| matches!(r, Err(Error::Invalid { .. }));
    assert!(shape_error(t.matmul(a, b)));
    assert!(shape_error(t.matmul(v, b)));
    assert!(shape_error(t.add(a, b)));
    assert!(shape_error(t.reshape(a, &[5])));
    assert!(shape_error(t.concat(&[a, b], 0)));
    assert!(shape_error(t.layer_norm(a, v, v, 1e-5)));
    assert!(shape_error(t.cross_entropy(a, &[0], IGNORE_INDEX)));
    assert!(
        invalid(t.cross_entropy(a, &[0, 3], IGNORE_INDEX)),
        "target 3 with 3 classes"
    );
    assert!(
        invalid(t.embedding(b, array![0usize, 4].view())),
        "id 4 in a table of 4 rows"
    );
    assert!(invalid(t.slice(a, 1, 2, 4)));
    assert!(invalid(t.permute(a, &[0, 0])));
    assert!(invalid(t.dropout(a, 1.0)));
    assert!(invalid(t.sum(a, &[2], false)));
    assert!(shape_error(t.attention(a, a, a, &AttnMask::causal())));
    let err = t.matmul(a, b).unwrap_err().to_string();
    assert!(
        err.contains("(2, 3)") && err.contains("(4, 5)"),
        "the error names both shapes: {err}"
    );
}

#[test]
fn tape_counts_trainable_parameters() {
    let mut store = ParamStore::<f32>::new();
    store
        .add("big", Array::zeros((10, 10)).into_dyn(), false)
        .unwrap();
    store
        .add("small", Array::zeros(5).into_dyn(), true)
        .unwrap();
    assert_eq!(store.num_params(), 105);
    assert_eq!(store.num_trainable(), 5);
    assert_eq!(
        store.trainable_summary(),
        "trainable params: 5 || all params: 105 || trainable%: 4.7619"
    );
    assert!(matches!(
        store.add("small", Array::zeros(1).into_dyn(), true),
        Err(Error::Param(..))
    ));
}
