//! Finite-difference gradient checks, in f64, for every op.
//!
//! For an op output y, the check builds the scalar L = Σ y ⊙ R with a fixed random R (so every
//! output element matters with a different weight), takes the tape's gradient of L with respect
//! to each input, and compares it with central differences (L(x + h) − L(x − h)) / 2h.
//!
//! The error reported per case is the largest over all input elements of
//! |analytic − numeric| / max(|analytic|, |numeric|, 1e-3): relative, with a floor so that
//! gradients that are zero up to rounding are compared absolutely. A case passes below 1e-6.
//!
//! [`cases`] is the suite: the `gradcheck_<op>` tests and `tunelab gradcheck` both run it.

use super::{AttnMask, ParamStore, Tape, Unary, Var, IGNORE_INDEX};
use crate::error::Result;
use crate::tensor::fmt_shape;
use crate::Grads;
use ndarray::{Array, Array2, ArrayD, IxDyn};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A case passes when its max relative error is below this.
pub const TOLERANCE: f64 = 1e-6;
/// Central-difference step.
pub const STEP: f64 = 1e-5;
const FLOOR: f64 = 1e-3;

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub op: &'static str,
    pub case: String,
    pub max_rel_err: f64,
    pub max_abs_err: f64,
    pub passed: bool,
}

/// How an input is initialised (some ops need positive or non-zero inputs).
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// Standard normal.
    Normal,
    /// |x| + 0.5: for sqrt, log, and denominators.
    Positive,
    /// x moved at least 0.1 away from 0: for ReLU's kink.
    AwayFromZero,
    /// Standard normal times a factor: large logits.
    Scaled(f64),
}

type Build = Box<dyn Fn(&mut Tape<'_, f64>, &[Var]) -> Result<Var>>;

/// One gradient check: an op, a description of the shapes, the inputs, and the computation.
pub struct Case {
    pub op: &'static str,
    pub desc: String,
    inputs: Vec<(Vec<usize>, Init)>,
    build: Build,
}

impl Case {
    fn new(
        op: &'static str,
        inputs: &[(&[usize], Init)],
        note: &str,
        build: impl Fn(&mut Tape<'_, f64>, &[Var]) -> Result<Var> + 'static,
    ) -> Self {
        let shapes: Vec<String> = inputs.iter().map(|(s, _)| fmt_shape(s)).collect();
        let desc = if note.is_empty() {
            shapes.join(" ")
        } else {
            format!("{} {note}", shapes.join(" "))
        };
        Self {
            op,
            desc,
            inputs: inputs.iter().map(|(s, i)| (s.to_vec(), *i)).collect(),
            build: Box::new(build),
        }
    }

    /// Runs the check: analytic gradients from the tape against central differences.
    pub fn run(&self, seed: u64) -> Result<CheckResult> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut store = ParamStore::<f64>::new();
        for (i, (shape, init)) in self.inputs.iter().enumerate() {
            let x: ArrayD<f64> = Array::random_using(IxDyn(shape), StandardNormal, &mut rng);
            let x = match init {
                Init::Normal => x,
                Init::Positive => x.mapv(|v| v.abs() + 0.5),
                Init::AwayFromZero => x.mapv(|v| v + 0.1 * v.signum()),
                Init::Scaled(k) => x * *k,
            };
            store.add(format!("x{i}"), x, true)?;
        }
        // The output's shape fixes the weights R of L = Σ y ⊙ R.
        let out_shape = {
            let mut tape = Tape::new(&store);
            let vars: Vec<Var> = store.ids().map(|id| tape.param(id)).collect();
            let y = (self.build)(&mut tape, &vars)?;
            tape.shape(y).to_vec()
        };
        let r: ArrayD<f64> = Array::random_using(IxDyn(&out_shape), StandardNormal, &mut rng);
        let loss_of = |store: &ParamStore<f64>, grads: Option<&mut Grads<f64>>| -> Result<f64> {
            let mut tape = Tape::new(store);
            let vars: Vec<Var> = store.ids().map(|id| tape.param(id)).collect();
            let y = (self.build)(&mut tape, &vars)?;
            let rv = tape.constant(r.clone());
            let weighted = tape.mul(y, rv)?;
            let loss = tape.sum_all(weighted)?;
            if let Some(grads) = grads {
                // Only what each backward declared it reads survives: reading anything else fails.
                tape.release_unsaved(0, &[loss]);
                tape.backward(loss, grads)?;
            }
            tape.scalar(loss)
        };
        let mut grads = Grads::new(&store);
        loss_of(&store, Some(&mut grads))?;
        let (mut max_rel, mut max_abs) = (0.0f64, 0.0f64);
        let mut probe = store.clone();
        for id in store.ids() {
            let analytic = grads
                .get(id)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(store.value(id).raw_dim()));
            for (i, &a) in analytic.iter().enumerate() {
                let x0 = store.value(id).as_slice_memory_order().expect("contiguous")[i];
                let set = |p: &mut ParamStore<f64>, v: f64| {
                    p.get_mut(id)
                        .value
                        .as_slice_memory_order_mut()
                        .expect("contiguous")[i] = v;
                };
                set(&mut probe, x0 + STEP);
                let up = loss_of(&probe, None)?;
                set(&mut probe, x0 - STEP);
                let down = loss_of(&probe, None)?;
                set(&mut probe, x0);
                let n = (up - down) / (2.0 * STEP);
                let abs = (a - n).abs();
                max_abs = max_abs.max(abs);
                max_rel = max_rel.max(abs / a.abs().max(n.abs()).max(FLOOR));
            }
        }
        Ok(CheckResult {
            op: self.op,
            case: self.desc.clone(),
            max_rel_err: max_rel,
            max_abs_err: max_abs,
            passed: max_rel < TOLERANCE,
        })
    }
}

use Init::{AwayFromZero as Nz, Normal as N, Positive as P};

fn unary_case(f: Unary, shape: &'static [usize], init: Init) -> Case {
    Case::new(f.name(), &[(shape, init)], "", move |t, x| t.unary(f, x[0]))
}

/// A key-padding mask (B, S) with the last `pad[b]` keys of row b padded.
fn padding(b: usize, s: usize, pad: &[usize]) -> Array2<bool> {
    Array2::from_shape_fn((b, s), |(i, j)| j < s - pad[i])
}

/// Every gradient check, in a fixed order.
pub fn cases() -> Vec<Case> {
    let mut c = vec![
        // matmul: 2-D, transposed operands as views, batched, a shared weight, non-contiguous.
        Case::new("matmul", &[(&[3, 4], N), (&[4, 5], N)], "", |t, x| {
            t.matmul(x[0], x[1])
        }),
        Case::new(
            "matmul",
            &[(&[4, 3], N), (&[5, 4], N)],
            "aᵀ·bᵀ",
            |t, x| t.matmul_t(x[0], x[1], true, true),
        ),
        Case::new(
            "matmul",
            &[(&[2, 3, 4], N), (&[2, 4, 5], N)],
            "batched",
            |t, x| t.matmul(x[0], x[1]),
        ),
        Case::new(
            "matmul",
            &[(&[2, 3, 4], N), (&[5, 4], N)],
            "shared bᵀ (Linear)",
            |t, x| t.matmul_t(x[0], x[1], false, true),
        ),
        Case::new(
            "matmul",
            &[(&[2, 4, 3], N), (&[4, 5], N)],
            "batched aᵀ, shared b",
            |t, x| t.matmul_t(x[0], x[1], true, false),
        ),
        Case::new(
            "matmul",
            &[(&[4, 2, 3], N), (&[2, 3, 5], N)],
            "a permuted (non-contiguous)",
            |t, x| {
                let a = t.permute(x[0], &[1, 0, 2])?;
                t.matmul(a, x[1])
            },
        ),
        // Broadcasting binary ops.
        Case::new("add", &[(&[2, 3, 4], N), (&[2, 3, 4], N)], "", |t, x| {
            t.add(x[0], x[1])
        }),
        Case::new(
            "add",
            &[(&[2, 3, 4], N), (&[4], N)],
            "bias broadcast",
            |t, x| t.add(x[0], x[1]),
        ),
        Case::new(
            "add",
            &[(&[2, 1, 4], N), (&[3, 1], N)],
            "both broadcast",
            |t, x| t.add(x[0], x[1]),
        ),
        Case::new("sub", &[(&[2, 3], N), (&[3], N)], "broadcast", |t, x| {
            t.sub(x[0], x[1])
        }),
        Case::new(
            "sub",
            &[(&[1, 3], N), (&[2, 1], N)],
            "both broadcast",
            |t, x| t.sub(x[0], x[1]),
        ),
        Case::new("mul", &[(&[2, 3, 4], N), (&[2, 3, 4], N)], "", |t, x| {
            t.mul(x[0], x[1])
        }),
        Case::new(
            "mul",
            &[(&[2, 3, 4], N), (&[3, 1], N)],
            "broadcast",
            |t, x| t.mul(x[0], x[1]),
        ),
        Case::new("div", &[(&[2, 3], N), (&[2, 3], P)], "", |t, x| {
            t.div(x[0], x[1])
        }),
        Case::new("div", &[(&[2, 3], N), (&[3], P)], "broadcast", |t, x| {
            t.div(x[0], x[1])
        }),
        // Piecewise-linear ops (random inputs: no element sits at a kink).
        Case::new("minimum", &[(&[3, 4], N), (&[3, 4], N)], "", |t, x| {
            t.minimum(x[0], x[1])
        }),
        Case::new(
            "minimum",
            &[(&[2, 3, 4], N), (&[3, 1], N)],
            "broadcast",
            |t, x| t.minimum(x[0], x[1]),
        ),
        Case::new("clamp", &[(&[4, 5], N)], "to [-0.5, 0.7]", |t, x| {
            t.clamp(x[0], -0.5, 0.7)
        }),
        // Elementwise functions.
        unary_case(Unary::Scale(-1.7), &[3, 4], N),
        unary_case(Unary::GeluTanh, &[3, 5], N),
        unary_case(Unary::GeluErf, &[3, 5], N),
        unary_case(Unary::Relu, &[3, 5], Nz),
        unary_case(Unary::Tanh, &[3, 5], N),
        unary_case(Unary::Sigmoid, &[3, 5], N),
        unary_case(Unary::LogSigmoid, &[3, 5], N),
        unary_case(Unary::Square, &[3, 5], N),
        unary_case(Unary::Sqrt, &[3, 5], P),
        unary_case(Unary::Exp, &[3, 5], N),
        unary_case(Unary::Log, &[3, 5], P),
        // Reductions.
        Case::new("sum", &[(&[2, 3, 4], N)], "axis 1", |t, x| {
            t.sum(x[0], &[1], false)
        }),
        Case::new("sum", &[(&[2, 3, 4], N)], "axes 0,2 keepdim", |t, x| {
            t.sum(x[0], &[0, 2], true)
        }),
        Case::new("sum", &[(&[2, 3, 4], N)], "all", |t, x| t.sum_all(x[0])),
        Case::new("mean", &[(&[2, 3, 4], N)], "axis 2", |t, x| {
            t.mean(x[0], &[2], false)
        }),
        Case::new("mean", &[(&[2, 3, 4], N)], "axes 0,1 keepdim", |t, x| {
            t.mean(x[0], &[0, 1], true)
        }),
        Case::new("mean", &[(&[2, 3, 4], N)], "all", |t, x| t.mean_all(x[0])),
        // Shape ops.
        Case::new("reshape", &[(&[2, 3, 4], N)], "→ (6, 4)", |t, x| {
            t.reshape(x[0], &[6, 4])
        }),
        Case::new(
            "reshape",
            &[(&[2, 3, 4], N)],
            "of a permuted input",
            |t, x| {
                let p = t.permute(x[0], &[2, 0, 1])?;
                t.reshape(p, &[4, 6])
            },
        ),
        Case::new("permute", &[(&[2, 3, 4], N)], "(2, 0, 1)", |t, x| {
            t.permute(x[0], &[2, 0, 1])
        }),
        Case::new("transpose", &[(&[2, 3, 4], N)], "axes 1, 2", |t, x| {
            t.transpose(x[0], 1, 2)
        }),
        Case::new(
            "concat",
            &[(&[2, 1, 3], N), (&[2, 2, 3], N), (&[2, 3, 3], N)],
            "axis 1",
            |t, x| t.concat(x, 1),
        ),
        Case::new("slice", &[(&[3, 5, 2], N)], "axis 1, 1..4", |t, x| {
            t.slice(x[0], 1, 1, 4)
        }),
        Case::new(
            "slice",
            &[(&[3, 5, 2], N)],
            "of a permuted input",
            |t, x| {
                let p = t.permute(x[0], &[1, 0, 2])?;
                t.slice(p, 0, 2, 5)
            },
        ),
        Case::new(
            "add_at",
            &[(&[2, 3, 6], N), (&[2, 3, 2], N)],
            "columns 3..5 of the last axis",
            |t, x| t.add_at(x[0], x[1], 2, 3),
        ),
        Case::new("index_select", &[(&[4, 3], N)], "rows 3,0,3", |t, x| {
            t.index_select(x[0], 0, &[3, 0, 3])
        }),
        // Fused layers.
        Case::new(
            "embedding",
            &[(&[7, 3], N)],
            "ids (2, 4) with repeats",
            |t, x| {
                let ids = ndarray::array![[1usize, 4, 4, 0], [6, 1, 2, 1]];
                t.embedding(x[0], ids.view())
            },
        ),
        Case::new("softmax", &[(&[3, 5], N)], "", |t, x| t.softmax(x[0])),
        Case::new(
            "softmax",
            &[(&[2, 3, 4], Init::Scaled(10.0))],
            "large inputs",
            |t, x| t.softmax(x[0]),
        ),
        Case::new("log_softmax", &[(&[3, 5], N)], "", |t, x| {
            t.log_softmax(x[0])
        }),
        Case::new(
            "log_softmax",
            &[(&[2, 3, 4], Init::Scaled(10.0))],
            "large inputs",
            |t, x| t.log_softmax(x[0]),
        ),
        Case::new(
            "layer_norm",
            &[(&[1, 3], N), (&[3], N), (&[3], N)],
            "",
            |t, x| t.layer_norm(x[0], x[1], x[2], 1e-5),
        ),
        Case::new(
            "layer_norm",
            &[(&[2, 3, 8], N), (&[8], N), (&[8], N)],
            "",
            |t, x| t.layer_norm(x[0], x[1], x[2], 1e-5),
        ),
        Case::new(
            "layer_norm",
            &[(&[8, 2, 3], N), (&[8], N), (&[8], N)],
            "x permuted",
            |t, x| {
                let p = t.permute(x[0], &[1, 2, 0])?;
                t.layer_norm(p, x[1], x[2], 1e-5)
            },
        ),
        Case::new("dropout", &[(&[4, 6], N)], "p=0.3, train", |t, x| {
            t.dropout(x[0], 0.3)
        }),
        Case::new(
            "attention",
            &[(&[2, 2, 4, 3], N), (&[2, 2, 4, 3], N), (&[2, 2, 4, 3], N)],
            "causal",
            |t, x| t.attention(x[0], x[1], x[2], &AttnMask::causal()),
        ),
        Case::new(
            "attention",
            &[(&[2, 2, 4, 3], N), (&[2, 2, 4, 3], N), (&[2, 2, 4, 3], N)],
            "bidirectional, padded",
            |t, x| {
                t.attention(
                    x[0],
                    x[1],
                    x[2],
                    &AttnMask::bidirectional().with_padding(padding(2, 4, &[0, 2])),
                )
            },
        ),
        Case::new(
            "attention",
            &[(&[2, 2, 3, 4], N), (&[2, 2, 5, 4], N), (&[2, 2, 5, 4], N)],
            "causal, 2 prefix keys, padded",
            |t, x| {
                t.attention(
                    x[0],
                    x[1],
                    x[2],
                    &AttnMask::causal().with_padding(padding(2, 5, &[1, 0])),
                )
            },
        ),
        Case::new(
            "attention",
            &[(&[2, 4, 2, 3], N), (&[2, 2, 4, 3], N), (&[2, 2, 4, 3], N)],
            "q permuted from (B, T, NH, HS)",
            |t, x| {
                let q = t.permute(x[0], &[0, 2, 1, 3])?;
                t.attention(q, x[1], x[2], &AttnMask::causal())
            },
        ),
        Case::new(
            "cross_entropy",
            &[(&[6, 5], N)],
            "2 rows ignored",
            |t, x| {
                t.cross_entropy(
                    x[0],
                    &[1, IGNORE_INDEX, 4, 0, IGNORE_INDEX, 2],
                    IGNORE_INDEX,
                )
            },
        ),
        Case::new(
            "cross_entropy",
            &[(&[2, 3, 5], Init::Scaled(30.0))],
            "large logits, (B, T, V)",
            |t, x| t.cross_entropy(x[0], &[0, 1, 2, 3, 4, 0], IGNORE_INDEX),
        ),
    ];
    // A small composite: every op above in one graph, as a transformer block uses them.
    c.push(Case::new(
        "composite",
        &[
            (&[2, 3, 4], N),
            (&[4], N),
            (&[4], N),
            (&[4, 12], N),
            (&[12], N),
        ],
        "LN → qkv → attention → GELU",
        |t, x| {
            let h = t.layer_norm(x[0], x[1], x[2], 1e-5)?;
            let qkv = t.matmul(h, x[3])?;
            let qkv = t.add(qkv, x[4])?;
            let qkv = t.reshape(qkv, &[2, 3, 3, 2, 2])?; // (B, T, 3, NH, HS)
            let qkv = t.permute(qkv, &[2, 0, 3, 1, 4])?; // (3, B, NH, T, HS)
            let q = t.slice(qkv, 0, 0, 1)?;
            let k = t.slice(qkv, 0, 1, 2)?;
            let v = t.slice(qkv, 0, 2, 3)?;
            let (q, k, v) = (
                t.reshape(q, &[2, 2, 3, 2])?,
                t.reshape(k, &[2, 2, 3, 2])?,
                t.reshape(v, &[2, 2, 3, 2])?,
            );
            let y = t.attention(q, k, v, &AttnMask::causal())?;
            t.gelu_tanh(y)
        },
    ));
    c
}

/// Runs every case whose op is `op` (or all cases for `None`).
pub fn run(op: Option<&str>) -> Result<Vec<CheckResult>> {
    cases()
        .iter()
        .enumerate()
        .filter(|(_, c)| op.is_none_or(|o| c.op == o))
        .map(|(i, c)| c.run(1000 + i as u64))
        .collect()
}
