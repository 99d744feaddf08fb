//! The independent oracle, the middle of the three kinds of reference the tests use (finite
//! differences per op in `gradcheck.rs`, this, PyTorch golden files): composite computations built
//! twice, once on tunelab's tape and once in the `autograd` crate (rust-autograd 1.1.1), in f64 on
//! the same fixed random inputs. The losses and every gradient must agree within [`TOL`]; each
//! tensor's max |tunelab − autograd| is printed
//! (`cargo test --test suite autograd_oracle:: -- --nocapture`).
//!
//! autograd is written against ndarray 0.12 and tunelab against 0.17, so arrays cross between
//! them as a flat row-major `Vec<f64>` plus a shape, never as ndarray types.
//!
//! The autograd side uses only its primitives (2-D matmul, reshape, tile, tanh, reduce_sum,
//! reduce_mean, inv_sqrt, softmax, log_softmax, +, −, ×), never a fused op of the same name as
//! tunelab's, so the two sides share no code and no derivation. Limits of autograd 1.1.1 shape
//! how it is written:
//! - Its binary ops broadcast only between equal ranks, larger operand on the left, so biases
//!   and layer-norm weights are fed to it as (1, C) or (1, 1, C) and gradients are compared
//!   element by element (the shapes agree once size-1 axes are dropped).
//! - `transpose` writes through `get_unchecked_mut` past a Vec's length, which current Rust's
//!   debug UB checks abort on, and `batch_matmul_t`'s gradient ignores its transpose flags.
//!   So attention is written without either: heads stay in the (B, T, NH, HS) layout and both
//!   q·kᵀ and probs·v are broadcast products summed over one axis.

use approx::abs_diff_eq;
use autograd as ag;
use ndarray::{Array, ArrayD, IxDyn};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tunelab::autodiff::{AttnMask, IGNORE_INDEX};
use tunelab::{Grads, ParamId, ParamStore, Tape};

/// Largest allowed |tunelab − autograd| for the loss and for every gradient element.
const TOL: f64 = 1e-5;

/// An array on autograd's side (its own ndarray 0.12).
type AgArray = ag::ndarray::Array<f64, ag::ndarray::IxDyn>;

/// A fixed random tensor: standard normal times `scale`, plus `shift`.
fn randn(rng: &mut StdRng, shape: &[usize], scale: f64, shift: f64) -> ArrayD<f64> {
    Array::random_using(IxDyn(shape), StandardNormal, rng).mapv(|v: f64| v * scale + shift)
}

/// The same elements, in row-major order, as an autograd array of shape `shape` (which may add
/// size-1 axes for autograd's broadcasting).
fn to_ag(a: &ArrayD<f64>, shape: &[usize]) -> AgArray {
    let data: Vec<f64> = a.iter().copied().collect();
    AgArray::from_shape_vec(ag::ndarray::IxDyn(shape), data).expect("element count")
}

/// A shape with its size-1 axes dropped: (8) and (1, 8) are the same bias.
fn squeezed(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// autograd's tensor as an array of ours in our shape: the two must hold the same elements in
/// the same order, in shapes equal but for size-1 axes.
fn as_ours(name: &str, ours: &ArrayD<f64>, theirs: &AgArray) -> ArrayD<f64> {
    assert_eq!(
        squeezed(ours.shape()),
        squeezed(theirs.shape()),
        "{name}: tunelab shape {:?} vs autograd shape {:?}",
        ours.shape(),
        theirs.shape()
    );
    ArrayD::from_shape_vec(ours.raw_dim(), theirs.iter().copied().collect()).expect("same size")
}

/// Compares the loss and each named gradient to TOL (approx's absolute difference), printing
/// every verdict with the max difference (llm.c's `test_gpt2` style) before asserting, so one
/// failure still shows all the numbers.
fn check(test: &str, loss: (f64, f64), grads: &[(&str, &ArrayD<f64>, &AgArray)]) {
    let mut rows = vec![(
        "loss".to_string(),
        abs_diff_eq!(loss.0, loss.1, epsilon = TOL),
        (loss.0 - loss.1).abs(),
    )];
    for (name, ours, theirs) in grads {
        let theirs = as_ours(name, ours, theirs);
        let max_diff = (*ours - &theirs)
            .iter()
            .fold(0.0, |m: f64, d| m.max(d.abs()));
        rows.push((
            format!("d{name}"),
            abs_diff_eq!(**ours, theirs, epsilon = TOL),
            max_diff,
        ));
    }
    println!(
        "{test}: loss tunelab {:.12} autograd {:.12}",
        loss.0, loss.1
    );
    for (name, same, d) in &rows {
        let verdict = if *same { "OK" } else { "NOT OK" };
        println!("  {verdict:6} {name:16} max |tunelab - autograd| = {d:.3e}");
    }
    for (name, same, d) in &rows {
        assert!(
            *same,
            "{test}: {name} differs, max |tunelab - autograd| = {d:.3e} > {TOL:.0e}"
        );
    }
}

/// The gradient tunelab computed for `id`.
fn grad_of(grads: &Grads<f64>, id: ParamId) -> &ArrayD<f64> {
    grads.get(id).expect("every input here is trainable")
}

/// GELU, tanh approximation, from autograd primitives:
/// 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).
fn ag_gelu_tanh<'g>(g: &'g ag::Graph<f64>, x: ag::Tensor<'g, f64>) -> ag::Tensor<'g, f64> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let inner = (x + x * x * x * 0.044715) * c;
    x * (g.tanh(inner) + 1.0) * 0.5
}

/// Two-layer MLP with GELU and cross-entropy (one row ignored):
/// x (N, C) → x·W1 + b1 (N, H) → GELU → ·W2 + b2 (N, V) → mean CE over the counted rows.
#[test]
fn autograd_oracle_mlp_gelu_cross_entropy() -> tunelab::Result<()> {
    const N: usize = 6;
    const C: usize = 5;
    const H: usize = 8;
    const V: usize = 4;
    let mut rng = StdRng::seed_from_u64(20240601);
    let x = randn(&mut rng, &[N, C], 1.0, 0.0); // (N, C)
    let w1 = randn(&mut rng, &[C, H], 0.6, 0.0); // (C, H)
    let b1 = randn(&mut rng, &[H], 0.2, 0.0); // (H)
    let w2 = randn(&mut rng, &[H, V], 0.6, 0.0); // (H, V)
    let b2 = randn(&mut rng, &[V], 0.2, 0.0); // (V)
    let targets: [i64; N] = [1, 3, IGNORE_INDEX, 0, 2, 3];

    // tunelab: x is a trainable parameter so that it receives a gradient too.
    let mut store = ParamStore::<f64>::new();
    let x_id = store.add("x", x.clone(), true)?;
    let w1_id = store.add("fc1.weight", w1.clone(), true)?;
    let b1_id = store.add("fc1.bias", b1.clone(), true)?;
    let w2_id = store.add("fc2.weight", w2.clone(), true)?;
    let b2_id = store.add("fc2.bias", b2.clone(), true)?;
    let mut tape = Tape::new(&store);
    let (xv, w1v, b1v, w2v, b2v) = (
        tape.param(x_id),
        tape.param(w1_id),
        tape.param(b1_id),
        tape.param(w2_id),
        tape.param(b2_id),
    );
    let h = tape.matmul(xv, w1v)?; // (N, H)
    let h = tape.add(h, b1v)?;
    let a = tape.gelu_tanh(h)?;
    let z = tape.matmul(a, w2v)?; // (N, V)
    let z = tape.add(z, b2v)?;
    let loss = tape.cross_entropy(z, &targets, IGNORE_INDEX)?;
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads)?;
    let loss_ours = tape.scalar(loss)?;

    // autograd: the ignore index becomes a weight matrix, 1/M at (i, y_i) for the M counted
    // rows and 0 elsewhere, so L = −Σ logsoftmax(z) ⊙ weights.
    let counted = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
    let mut weights = AgArray::zeros(ag::ndarray::IxDyn(&[N, V]));
    for (i, &t) in targets.iter().enumerate() {
        if t != IGNORE_INDEX {
            weights[[i, t as usize].as_ref()] = 1.0 / counted as f64;
        }
    }
    let feeds_data = [
        to_ag(&x, &[N, C]),
        to_ag(&w1, &[C, H]),
        to_ag(&b1, &[1, H]),
        to_ag(&w2, &[H, V]),
        to_ag(&b2, &[1, V]),
    ];
    let out: Vec<AgArray> = ag::run(|g: &mut ag::Graph<f64>| {
        let g: &ag::Graph<f64> = g;
        let inputs: Vec<ag::Tensor<f64>> = feeds_data
            .iter()
            .map(|a| {
                let shape: Vec<isize> = a.shape().iter().map(|&d| d as isize).collect();
                g.placeholder(&shape)
            })
            .collect();
        let (xa, w1a, b1a, w2a, b2a) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]);
        let h = g.matmul(xa, w1a) + b1a; // (N, H)
        let a = ag_gelu_tanh(g, h);
        let z = g.matmul(a, w2a) + b2a; // (N, V)
        let logp = g.log_softmax(z, 1);
        let loss = g.neg(g.reduce_sum_to_scalar(logp * g.convert_to_tensor(weights)));
        let mut wanted = vec![loss];
        wanted.extend(g.grad(&[loss], &inputs));
        let feeds: Vec<_> = inputs
            .iter()
            .zip(&feeds_data)
            .map(|(t, a)| t.given(a.view()))
            .collect();
        g.eval(&wanted, &feeds)
            .into_iter()
            .map(|r| r.expect("autograd evaluation"))
            .collect()
    });
    let loss_theirs = out[0][[].as_ref()];

    check(
        "autograd_oracle_mlp_gelu_cross_entropy",
        (loss_ours, loss_theirs),
        &[
            ("x", grad_of(&grads, x_id), &out[1]),
            ("fc1.weight", grad_of(&grads, w1_id), &out[2]),
            ("fc1.bias", grad_of(&grads, b1_id), &out[3]),
            ("fc2.weight", grad_of(&grads, w2_id), &out[4]),
            ("fc2.bias", grad_of(&grads, b2_id), &out[5]),
        ],
    );
    // The ignored row must neither add to the loss nor receive a gradient.
    let dx = grad_of(&grads, x_id);
    assert!(dx.index_axis(ndarray::Axis(0), 2).iter().all(|&v| v == 0.0));
    Ok(())
}

/// Layer norm then causal multi-head self-attention, with a weighted-sum loss:
/// x (B, T, C) → LN → q, k, v = LN(x)·W + b, split to (B, NH, T, HS) → softmax(q kᵀ/√HS + mask) v
/// → back to (B, T, C) → L = Σ y ⊙ R for a fixed random R.
#[test]
fn autograd_oracle_layernorm_attention() -> tunelab::Result<()> {
    const B: usize = 2;
    const T: usize = 4;
    const C: usize = 6;
    const NH: usize = 2;
    const HS: usize = C / NH;
    const EPS: f64 = 1e-5;
    let mut rng = StdRng::seed_from_u64(7);
    let x = randn(&mut rng, &[B, T, C], 1.5, 0.3); // (B, T, C), rows with non-zero mean
    let gamma = randn(&mut rng, &[C], 0.3, 1.0); // (C)
    let beta = randn(&mut rng, &[C], 0.2, 0.0); // (C)
    let proj: Vec<(ArrayD<f64>, ArrayD<f64>)> = (0..3)
        .map(|_| {
            (
                randn(&mut rng, &[C, C], 0.7, 0.0), // (C, C)
                randn(&mut rng, &[C], 0.2, 0.0),    // (C)
            )
        })
        .collect();
    let r = randn(&mut rng, &[B, T, C], 1.0, 0.0); // (B, T, C), loss weights

    // tunelab
    let mut store = ParamStore::<f64>::new();
    let x_id = store.add("x", x.clone(), true)?;
    let g_id = store.add("ln_1.weight", gamma.clone(), true)?;
    let b_id = store.add("ln_1.bias", beta.clone(), true)?;
    let mut proj_ids = Vec::new();
    for (name, (w, b)) in ["q_proj", "k_proj", "v_proj"].iter().zip(&proj) {
        proj_ids.push((
            store.add(format!("attn.{name}.weight"), w.clone(), true)?,
            store.add(format!("attn.{name}.bias"), b.clone(), true)?,
        ));
    }
    let mut tape = Tape::new(&store);
    let (xv, gv, bv) = (tape.param(x_id), tape.param(g_id), tape.param(b_id));
    let xn = tape.layer_norm(xv, gv, bv, EPS)?; // (B, T, C)
    let mut heads = Vec::new();
    for &(w_id, b_id) in &proj_ids {
        let (w, b) = (tape.param(w_id), tape.param(b_id));
        let p = tape.matmul(xn, w)?; // (B, T, C)
        let p = tape.add(p, b)?;
        let p = tape.reshape(p, &[B, T, NH, HS])?;
        heads.push(tape.permute(p, &[0, 2, 1, 3])?); // (B, NH, T, HS)
    }
    let y = tape.attention(heads[0], heads[1], heads[2], &AttnMask::causal())?; // (B, NH, T, HS)
    let y = tape.permute(y, &[0, 2, 1, 3])?; // (B, T, NH, HS)
    let y = tape.reshape(y, &[B, T, C])?;
    let rv = tape.constant(r.clone());
    let weighted = tape.mul(y, rv)?;
    let loss = tape.sum_all(weighted)?;
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads)?;
    let loss_ours = tape.scalar(loss)?;

    // autograd
    let mut feeds_data = vec![
        to_ag(&x, &[B, T, C]),
        to_ag(&gamma, &[1, 1, C]),
        to_ag(&beta, &[1, 1, C]),
    ];
    for (w, b) in &proj {
        feeds_data.push(to_ag(w, &[C, C]));
        feeds_data.push(to_ag(b, &[1, C]));
    }
    // Additive causal mask (B, T, S, NH): −1e9 where key s is after query t. exp underflows to
    // exactly 0 there after the softmax's max subtraction.
    let mask = AgArray::from_shape_fn(ag::ndarray::IxDyn(&[B, T, T, NH]), |ix| {
        if ix[2] > ix[1] {
            -1e9
        } else {
            0.0
        }
    });
    let r_ag = to_ag(&r, &[B, T, C]);
    let out: Vec<AgArray> = ag::run(|g: &mut ag::Graph<f64>| {
        let g: &ag::Graph<f64> = g;
        let inputs: Vec<ag::Tensor<f64>> = feeds_data
            .iter()
            .map(|a| {
                let shape: Vec<isize> = a.shape().iter().map(|&d| d as isize).collect();
                g.placeholder(&shape)
            })
            .collect();
        let (xa, ga, ba) = (inputs[0], inputs[1], inputs[2]);
        // Layer norm from mean and (biased) variance over the last axis.
        let mu = g.reduce_mean(xa, &[2], true); // (B, T, 1)
        let xc = xa - mu; // (B, T, C)
        let var = g.reduce_mean(xc * xc, &[2], true); // (B, T, 1)
        let xn = xc * g.inv_sqrt(var + EPS) * ga + ba; // (B, T, C)
        let xn2 = g.reshape(xn, &[(B * T) as isize, C as isize]); // (B*T, C)
                                                                  // Projection i (weight inputs[3 + 2i], bias inputs[4 + 2i]), its heads kept in place:
                                                                  // (B*T, C) is read as (B, T, NH, HS) and given a size-1 axis at `unit` for broadcasting.
        let project = |i: usize, shape: [usize; 5]| {
            let p = g.matmul(xn2, inputs[3 + 2 * i]) + inputs[4 + 2 * i]; // (B*T, C)
            g.reshape(p, &shape.map(|d| d as isize))
        };
        let q = project(0, [B, T, 1, NH, HS]); // (B, T, 1, NH, HS)
        let k = project(1, [B, 1, T, NH, HS]); // (B, 1, S, NH, HS)
        let v = project(2, [B, 1, T, NH, HS]); // (B, 1, S, NH, HS)
                                               // scores[b, t, s, h] = Σ_d q[b, t, h, d] k[b, s, h, d] / √HS, as a broadcast product.
        let qk = g.tile(q, 2, T) * k; // (B, T, S, NH, HS)
        let scores = g.reduce_sum(qk, &[4], false) * (1.0 / (HS as f64).sqrt()); // (B, T, S, NH)
        let probs = g.softmax(scores + g.convert_to_tensor(mask), 2); // over keys s
        let probs = g.reshape(probs, &[B as isize, T as isize, T as isize, NH as isize, 1]);
        // y[b, t, h, d] = Σ_s probs[b, t, s, h] v[b, s, h, d].
        let pv = g.tile(probs, 4, HS) * v; // (B, T, S, NH, HS)
        let y = g.reduce_sum(pv, &[2], false); // (B, T, NH, HS)
        let y = g.reshape(y, &[B as isize, T as isize, C as isize]); // (B, T, C)
        let loss = g.reduce_sum_to_scalar(y * g.convert_to_tensor(r_ag));
        let mut wanted = vec![loss];
        wanted.extend(g.grad(&[loss], &inputs));
        let feeds: Vec<_> = inputs
            .iter()
            .zip(&feeds_data)
            .map(|(t, a)| t.given(a.view()))
            .collect();
        g.eval(&wanted, &feeds)
            .into_iter()
            .map(|r| r.expect("autograd evaluation"))
            .collect()
    });
    let loss_theirs = out[0][[].as_ref()];

    let names = [
        "q_proj.weight",
        "q_proj.bias",
        "k_proj.weight",
        "k_proj.bias",
        "v_proj.weight",
        "v_proj.bias",
    ];
    let proj_grads: Vec<&ArrayD<f64>> = proj_ids
        .iter()
        .flat_map(|&(w, b)| [grad_of(&grads, w), grad_of(&grads, b)])
        .collect();
    let mut compared = vec![
        ("x", grad_of(&grads, x_id), &out[1]),
        ("ln_1.weight", grad_of(&grads, g_id), &out[2]),
        ("ln_1.bias", grad_of(&grads, b_id), &out[3]),
    ];
    for (i, name) in names.iter().enumerate() {
        compared.push((name, proj_grads[i], &out[4 + i]));
    }
    // dk_proj.bias is zero in exact arithmetic (it shifts every score of a query row by the
    // same amount, which softmax ignores), so both sides agreeing there means both round to ~0.
    check(
        "autograd_oracle_layernorm_attention",
        (loss_ours, loss_theirs),
        &compared,
    );
    Ok(())
}
