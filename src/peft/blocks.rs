//! What LoHa, LoKr and VeRA share with LoRA: which Linears (or which blocks of GPT-2's fused
//! c_attn) a target list picks, adding a block's update to a Linear's output, and folding a
//! weight update ΔW into the frozen weight for merging.
//!
//! The targets are LoRA's vocabulary ([`parse_targets`]). On GPT-2, `q`, `k` and `v` pick
//! blocks of c_attn's output columns, each with its own update (named with a `.q`/`.k`/`.v`
//! suffix), and `qkv` picks c_attn whole, as PEFT does; every other target is one whole Linear.
//! A block's update ΔW is (width, d_in), in nn.Linear's (out, in) orientation for Conv1D and
//! nn.Linear alike, as PEFT stores it.

use super::lora::{block_linears, parse_targets, Target};
use crate::autodiff::{ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::{Layout, Linear, Role, Transformer};
use crate::tensor::Float;
use ndarray::{s, Array2, Ix2};

/// One targeted Linear, or one block of GPT-2's fused c_attn.
#[derive(Debug, Clone)]
pub struct Block {
    pub linear: Linear,
    /// `""` for a whole Linear, `".q"`, `".k"` or `".v"` for a block of c_attn: the suffix of
    /// the block's parameter names.
    pub suffix: String,
    /// The output columns the block updates.
    pub cols: (usize, usize),
}

impl Block {
    /// Its output width, cols.1 − cols.0.
    pub fn width(&self) -> usize {
        self.cols.1 - self.cols.0
    }

    /// `<module>.<param><suffix>`, e.g. `h.0.attn.c_attn.hada_w1_a.q`.
    pub fn name(&self, param: &str) -> String {
        format!("{}.{param}{}", self.linear.module, self.suffix)
    }
}

/// The blocks `targets` picks in `model`, in model order; an error naming `method` when a
/// target is unknown or none matches.
pub fn blocks(model: &Transformer, targets: &[String], method: &'static str) -> Result<Vec<Block>> {
    let wanted = parse_targets(&targets.join(","))?;
    let wants = |t: Target| wanted.contains(&t);
    let c = model.config.d_model;
    let mut out = Vec::new();
    for lin in block_linears(model) {
        let picked: Vec<(&str, (usize, usize))> = match lin.role {
            Role::Qkv if wants(Target::Qkv) => vec![("", (0, 3 * c))],
            Role::Qkv => [(Target::Q, 0), (Target::K, 1), (Target::V, 2)]
                .into_iter()
                .filter(|&(t, _)| wants(t))
                .map(|(t, i)| (t.name(), (i * c, (i + 1) * c)))
                .collect(),
            role if Target::of_role(role).is_some_and(wants) => vec![("", (0, lin.d_out))],
            _ => vec![],
        };
        for (tag, cols) in picked {
            out.push(Block {
                linear: lin.clone(),
                suffix: if tag.is_empty() {
                    String::new()
                } else {
                    format!(".{tag}")
                },
                cols,
            });
        }
    }
    if out.is_empty() {
        return invalid(
            method,
            format!("targets {targets:?} match no Linear of this model"),
        );
    }
    Ok(out)
}

/// y + d on the block's columns of y's last axis (y (…, d_out), d (…, width)).
pub fn add_update<F: Float>(tape: &mut Tape<'_, F>, block: &Block, y: Var, d: Var) -> Result<Var> {
    if block.cols == (0, block.linear.d_out) {
        tape.add(y, d)
    } else {
        let last = tape.shape(y).len() - 1;
        tape.add_at(y, d, last, block.cols.0)
    }
}

/// W += sign · ΔW on the block's columns, ΔW (width, d_in), in the weight's own layout.
/// A weight stored quantised (`--base-dtype`) is refused: the update would be rounded away.
pub fn fold<F: Float>(
    store: &mut ParamStore<F>,
    block: &Block,
    dw: &Array2<F>,
    sign: f64,
) -> crate::error::Result<()> {
    if store.quantized(block.linear.weight).is_some() {
        return crate::error::invalid(
            "merge",
            format!(
                "{}.weight is stored quantised (--base-dtype); load the base in f32 to merge",
                block.linear.module
            ),
        );
    }
    let w = &mut store.get_mut(block.linear.weight).value;
    let mut w2 = w.view_mut().into_dimensionality::<Ix2>().expect("W is 2-D");
    let (c0, c1) = block.cols;
    let sign = F::of(sign);
    match block.linear.layout {
        Layout::OutIn => w2.slice_mut(s![c0..c1, ..]).scaled_add(sign, dw),
        Layout::InOut => w2.slice_mut(s![.., c0..c1]).scaled_add(sign, &dw.t()),
    }
    Ok(())
}

/// The update ΔW (width, d_in) a tape variable holds, as an owned matrix.
pub fn matrix<F: Float>(tape: &Tape<'_, F>, dw: Var) -> Array2<F> {
    tape.value(dw)
        .into_dimensionality::<Ix2>()
        .expect("ΔW is 2-D")
        .to_owned()
}

/// Folds every part's ΔW into its block's weight, sign +1 to merge and −1 to unmerge. The ΔWs
/// are computed on one inference tape first (it borrows the store), then written.
pub fn fold_parts<'p, F: Float, P: 'p>(
    store: &mut ParamStore<F>,
    parts: impl IntoIterator<Item = &'p P>,
    block: impl Fn(&'p P) -> &'p Block,
    delta_weight: impl Fn(&mut Tape<'_, F>, &P) -> Result<Var>,
    sign: f64,
) -> Result<()> {
    let mut updates = Vec::new();
    {
        let mut tape = Tape::inference(store);
        for p in parts {
            let dw = delta_weight(&mut tape, p)?;
            updates.push((block(p), matrix(&tape, dw)));
        }
    }
    for (b, dw) in updates {
        fold(store, b, &dw, sign)?;
    }
    Ok(())
}

/// y + x ΔWᵀ for every part, each on its block's columns: the forward of a method whose update
/// is a weight (x (…, d_in), y (…, d_out)).
pub fn add_parts<'p, F: Float, P>(
    tape: &mut Tape<'_, F>,
    x: Var,
    y: Var,
    parts: &'p [P],
    block: impl Fn(&'p P) -> &'p Block,
    delta_weight: impl Fn(&mut Tape<'_, F>, &P) -> Result<Var>,
) -> Result<Var> {
    let mut y = y;
    for p in parts {
        let dw = delta_weight(tape, p)?;
        let d = tape.matmul_t(x, dw, false, true)?; // (…, width)
        y = add_update(tape, block(p), y, d)?;
    }
    Ok(y)
}
