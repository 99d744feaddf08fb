//! The tape: a define-by-run record of every op, replayed in reverse by [`Tape::backward`].
//!
//! Nodes are appended in the order ops run, so the node list is already a topological order and
//! backward is one reverse loop. Each node keeps its value and, only when some trainable
//! parameter lies upstream of it, the op that made it (with the cache its backward needs).
//! A node that no trainable parameter reaches records nothing and is skipped in backward, and
//! each op's backward computes only the input gradients that are needed: a frozen Linear never
//! computes its weight gradient. In no-grad mode nothing is recorded at all.
//!
//! Each recorded op says which values its backward reads ([`Backward::saves`]), as PyTorch's
//! `save_for_backward` does. Those are kept; any other value can be released once the forward
//! has moved past it ([`Tape::release_unsaved`]: the transformer calls it after each block, the
//! Trainer once the loss is computed), so a frozen Linear, whose backward needs its weight but not
//! its input, keeps nothing for a weight gradient it will not compute.
//!
//! Gradient checkpointing ([`Tape::checkpoint`]) keeps even less: a segment (one transformer
//! block) runs without recording, only its input is kept, and backward runs its forward again,
//! recorded, when it reaches it ([`Recompute`]).

use super::param::{Grads, ParamId, ParamStore};
use crate::error::{invalid, Error, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::fmt;

/// A handle to a value on a tape. Cheap to copy; only meaningful on the tape that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

// ANCHOR: backward_trait
/// The backward half of an op. `y` is the op's forward output and `grad` the gradient of the
/// loss with respect to it; the op adds its inputs' gradients into `ctx`, skipping inputs that
/// need none.
pub(crate) trait Backward<F: Float> {
    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, y: ArrayViewD<'_, F>, grad: &ArrayD<F>);

    /// Bytes the op saved for its backward beyond the tape's values (attention probabilities,
    /// layer-norm statistics, dropout masks, ...): counted as activation memory.
    fn saved_bytes(&self) -> usize {
        0
    }

    /// The values this backward will read, given which inputs need a gradient: the tape keeps
    /// these and may release the rest. Shapes are always kept, so an op that only needs an
    /// input's shape saves nothing.
    fn saves(&self, needs: &dyn Fn(Var) -> bool) -> Saves;
}
// ANCHOR_END: backward_trait

/// What an op's backward reads: some of its inputs' values, and perhaps its own output.
#[derive(Debug, Default)]
pub(crate) struct Saves {
    pub inputs: Vec<Var>,
    pub output: bool,
}

impl Saves {
    /// Nothing beyond the shapes (and the op's own cache).
    pub fn nothing() -> Self {
        Self::default()
    }

    /// These inputs' values.
    pub fn inputs(vars: impl IntoIterator<Item = Var>) -> Self {
        Self {
            inputs: vars.into_iter().collect(),
            output: false,
        }
    }

    /// The op's own output.
    pub fn output() -> Self {
        Self {
            inputs: Vec::new(),
            output: true,
        }
    }

    /// Also `v`'s value, if `cond`.
    pub fn with_if(mut self, cond: bool, v: Var) -> Self {
        if cond {
            self.inputs.push(v);
        }
        self
    }
}

/// A gradient-checkpointed segment: which block it is and the (B, T) real-token mask it ran
/// with, handed back to the [`Recompute`] that runs it again in backward.
#[derive(Debug, Clone)]
pub struct Segment {
    pub index: usize,
    pub mask: ndarray::Array2<bool>,
    /// The document of each position of a packed row (see `AttnMask::documents`), if any.
    pub documents: Option<ndarray::Array2<usize>>,
}

/// How backward runs a checkpointed segment's forward again: the model implements it for its
/// blocks (`nn::BlockRecompute`).
pub trait Recompute<F: Float> {
    fn recompute(&self, tape: &mut Tape<'_, F>, segment: &Segment, x: Var) -> Result<Var>;
}

/// A checkpointed segment on the tape: enough to run it again, recorded, in backward.
struct Checkpoint {
    segment: Segment,
    x: Var,
    /// The dropout stream as the segment found it, so the recomputed masks are the same.
    rng: StdRng,
    /// The trainable parameters the segment read, and their variables on this tape.
    params: Vec<(ParamId, Var)>,
}

enum Value<'p, F: Float> {
    Owned(ArrayD<F>),
    Param(&'p ArrayD<F>),
    /// Freed: no backward reads it and the forward has moved on. Only its shape remains.
    Released(IxDyn),
}

struct Node<'p, F: Float> {
    value: Value<'p, F>,
    requires_grad: bool,
    /// Some recorded backward reads this value: it is never released.
    saved: bool,
    op: Option<Box<dyn Backward<F>>>,
    checkpoint: Option<Box<Checkpoint>>,
    name: &'static str,
}

impl<'p, F: Float> Node<'p, F> {
    fn view(&self) -> ArrayViewD<'_, F> {
        match &self.value {
            Value::Owned(a) => a.view(),
            Value::Param(a) => a.view(),
            Value::Released(_) => panic!(
                "the value of a `{}` node was released: its backward did not declare it in `saves`, or the forward read it after the block that made it",
                self.name
            ),
        }
    }

    fn shape(&self) -> &[usize] {
        match &self.value {
            Value::Owned(a) => a.shape(),
            Value::Param(a) => a.shape(),
            Value::Released(s) => ndarray::Dimension::slice(s),
        }
    }

    fn leaf(value: Value<'p, F>, requires_grad: bool, name: &'static str) -> Self {
        Node {
            value,
            requires_grad,
            saved: false,
            op: None,
            checkpoint: None,
            name,
        }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint of segment {}", self.segment.index)
    }
}

/// What an op's backward sees: input values, which inputs need a gradient, and gradient slots.
pub(crate) struct BackwardCtx<'a, 'p, F: Float> {
    nodes: &'a [Node<'p, F>],
    grads: &'a mut [Option<ArrayD<F>>],
}

impl<'a, 'p, F: Float> BackwardCtx<'a, 'p, F> {
    /// The forward value of `v` (borrowed from the tape, so it can be held while writing grads).
    pub fn value(&self, v: Var) -> ArrayViewD<'a, F> {
        let nodes: &'a [Node<'p, F>] = self.nodes;
        nodes[v.0].view()
    }

    /// The shape of `v` (kept even when its value was released).
    pub fn shape(&self, v: Var) -> &'a [usize] {
        let nodes: &'a [Node<'p, F>] = self.nodes;
        nodes[v.0].shape()
    }

    /// Whether `v` needs a gradient (some trainable parameter lies upstream of it).
    pub fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// The gradient slot of `v`, zero-filled on first use, for in-place accumulation.
    pub fn grad_mut(&mut self, v: Var) -> &mut ArrayD<F> {
        let shape = IxDyn(self.nodes[v.0].shape());
        self.grads[v.0].get_or_insert_with(|| ArrayD::zeros(shape))
    }

    /// Adds the view `g` into the gradient of `v`: in place when the slot exists, one copy
    /// when it is empty.
    pub fn accumulate_view(&mut self, v: Var, g: ArrayViewD<'_, F>) {
        debug_assert_eq!(g.shape(), self.nodes[v.0].shape());
        match &mut self.grads[v.0] {
            Some(slot) => *slot += &g,
            slot @ None => *slot = Some(g.as_standard_layout().into_owned()),
        }
    }

    /// Adds `g` into the gradient of `v` (moving it in when the slot is empty).
    pub fn accumulate(&mut self, v: Var, g: ArrayD<F>) {
        debug_assert_eq!(
            g.shape(),
            self.nodes[v.0].shape(),
            "gradient shape for {}",
            self.nodes[v.0].name
        );
        match &mut self.grads[v.0] {
            Some(slot) => *slot += &g,
            slot @ None => {
                *slot = Some(if g.is_standard_layout() {
                    g
                } else {
                    g.as_standard_layout().into_owned()
                })
            }
        }
    }
}

/// A tape of operations over the parameters of one [`ParamStore`].
pub struct Tape<'p, F: Float> {
    store: &'p ParamStore<F>,
    nodes: Vec<Node<'p, F>>,
    param_vars: HashMap<ParamId, Var>,
    grad_enabled: bool,
    train: bool,
    checkpointing: bool,
    pub(crate) rng: StdRng,
}

impl<'p, F: Float> Tape<'p, F> {
    /// A new tape in training mode with gradients recorded; dropout seeded with 0.
    pub fn new(store: &'p ParamStore<F>) -> Self {
        Self {
            store,
            nodes: Vec::new(),
            param_vars: HashMap::new(),
            grad_enabled: true,
            train: true,
            checkpointing: false,
            rng: StdRng::seed_from_u64(0),
        }
    }

    /// Evaluation mode: no gradients recorded, dropout off. Nothing is kept for backward.
    pub fn inference(store: &'p ParamStore<F>) -> Self {
        let mut t = Self::new(store);
        t.grad_enabled = false;
        t.train = false;
        t
    }

    /// Turns gradient recording on or off (off: a no-grad evaluation).
    pub fn set_grad_enabled(&mut self, on: bool) {
        self.grad_enabled = on;
    }

    /// Training mode (dropout active) or evaluation mode (dropout is the identity).
    pub fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    pub fn is_train(&self) -> bool {
        self.train
    }

    /// Gradient checkpointing on or off: when on (and gradients are recorded), the model runs
    /// each block through [`Tape::checkpoint`], and backward needs a [`Recompute`].
    pub fn set_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    /// Whether segments should be checkpointed: checkpointing is on and gradients are recorded.
    pub fn checkpointing(&self) -> bool {
        self.checkpointing && self.grad_enabled
    }

    /// Reseeds the tape's random stream (used by dropout).
    pub fn seed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub fn store(&self) -> &'p ParamStore<F> {
        self.store
    }

    /// The parameter `id` as a leaf. Calling it twice gives the same variable, so a tied weight
    /// used in two places accumulates both gradients.
    pub fn param(&mut self, id: ParamId) -> Var {
        if let Some(&v) = self.param_vars.get(&id) {
            return v;
        }
        let store = self.store;
        let v = Var(self.nodes.len());
        self.nodes.push(Node::leaf(
            Value::Param(store.value(id)),
            self.grad_enabled && store.is_trainable(id),
            "param",
        ));
        self.param_vars.insert(id, v);
        v
    }

    /// The parameter called `name` as a leaf.
    pub fn param_named(&mut self, name: &str) -> Result<Var> {
        let id = self.store.id(name)?;
        Ok(self.param(id))
    }

    /// A constant (input data): never receives a gradient.
    pub fn constant(&mut self, value: ArrayD<F>) -> Var {
        self.leaf(value, false)
    }

    /// An input leaf that receives a gradient when `requires_grad` (a checkpointed segment's
    /// input, recomputed in backward).
    fn leaf(&mut self, value: ArrayD<F>, requires_grad: bool) -> Var {
        let v = Var(self.nodes.len());
        self.nodes
            .push(Node::leaf(Value::Owned(value), requires_grad, "constant"));
        v
    }

    // ANCHOR: push
    /// Records the output of an op. The op (and its cache) is kept only when an input needs a
    /// gradient; otherwise it is dropped here and backward will never visit this node.
    pub(crate) fn push(
        &mut self,
        name: &'static str,
        value: ArrayD<F>,
        inputs: &[Var],
        op: impl Backward<F> + 'static,
    ) -> Var {
        let requires_grad =
            self.grad_enabled && inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let v = Var(self.nodes.len());
        let mut saved = false;
        let op: Option<Box<dyn Backward<F>>> = if requires_grad {
            let saves = op.saves(&|x: Var| self.nodes[x.0].requires_grad);
            for x in saves.inputs {
                self.nodes[x.0].saved = true;
            }
            saved = saves.output;
            Some(Box::new(op))
        } else {
            None
        };
        self.nodes.push(Node {
            value: Value::Owned(value),
            requires_grad,
            saved,
            op,
            checkpoint: None,
            name,
        });
        v
    }
    // ANCHOR_END: push

    /// Where the next node will go: pass it to [`Tape::release_unsaved`] after a segment.
    pub fn mark(&self) -> usize {
        self.nodes.len()
    }

    // ANCHOR: release
    /// Frees the values of the nodes recorded since `mark` that no backward reads, except those
    /// in `keep` (what the forward still uses). Returns the bytes freed.
    pub fn release_unsaved(&mut self, mark: usize, keep: &[Var]) -> usize {
        let mut freed = 0;
        for (i, node) in self.nodes.iter_mut().enumerate().skip(mark) {
            if node.saved || keep.contains(&Var(i)) {
                continue;
            }
            if let Value::Owned(a) = &node.value {
                freed += a.len() * std::mem::size_of::<F>();
                node.value = Value::Released(a.raw_dim());
            }
        }
        freed
    }
    // ANCHOR_END: release

    // ANCHOR: checkpoint
    /// Runs `f` on `x` as a gradient-checkpointed segment: unrecorded, keeping only `x` (and the
    /// output), so none of the segment's activations stay on the tape. Backward runs the
    /// segment's forward again, recorded, through the [`Recompute`] given to
    /// [`Tape::backward_recomputing`], with the same dropout masks. Without gradients `f` just
    /// runs here.
    pub fn checkpoint(
        &mut self,
        segment: Segment,
        x: Var,
        f: impl FnOnce(&mut Tape<'p, F>, Var) -> Result<Var>,
    ) -> Result<Var> {
        if !self.grad_enabled {
            return f(self, x);
        }
        let rng = self.rng.clone();
        let mut sub = Tape::new(self.store);
        sub.grad_enabled = false;
        sub.train = self.train;
        sub.rng = rng.clone();
        let xs = sub.constant(self.value(x).to_owned());
        let y = f(&mut sub, xs)?;
        // Later dropout draws continue where the segment's left off, as without checkpointing.
        self.rng = sub.rng.clone();
        let mut ids: Vec<ParamId> = sub.param_vars.keys().copied().collect();
        ids.sort_by_key(|id| id.0);
        let value = sub.value(y).to_owned();
        drop(sub);
        let params: Vec<(ParamId, Var)> = ids
            .into_iter()
            .filter(|&id| self.store.is_trainable(id))
            .map(|id| (id, self.param(id)))
            .collect();
        let requires_grad = self.nodes[x.0].requires_grad || !params.is_empty();
        let checkpoint = requires_grad.then(|| {
            self.nodes[x.0].saved = true;
            Box::new(Checkpoint {
                segment,
                x,
                rng,
                params,
            })
        });
        let v = Var(self.nodes.len());
        self.nodes.push(Node {
            value: Value::Owned(value),
            requires_grad,
            saved: false,
            op: None,
            checkpoint,
            name: "checkpoint",
        });
        Ok(v)
    }
    // ANCHOR_END: checkpoint

    /// Whether an op on these inputs will be recorded (so a forward can skip building its cache).
    pub(crate) fn records(&self, inputs: &[Var]) -> bool {
        self.grad_enabled && inputs.iter().any(|v| self.nodes[v.0].requires_grad)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> ArrayViewD<'_, F> {
        self.nodes[v.0].view()
    }

    pub fn shape(&self, v: Var) -> &[usize] {
        self.nodes[v.0].shape()
    }

    /// The single element of a one-element tensor (a loss).
    pub fn scalar(&self, v: Var) -> Result<F> {
        let a = self.value(v);
        if a.len() != 1 {
            return invalid(
                "scalar",
                format!("expected one element, got shape {}", fmt_shape(a.shape())),
            );
        }
        Ok(*a.iter().next().expect("one element"))
    }

    /// Whether `v` will receive a gradient in backward.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// The op that produced `v` (`"param"` and `"constant"` for leaves).
    pub fn op_name(&self, v: Var) -> &'static str {
        self.nodes[v.0].name
    }

    /// Number of nodes recorded.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes held for the backward pass: the values the tape owns and what each op saved beside
    /// them (activations; parameters are borrowed, not counted).
    pub fn activation_bytes(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                let value = match &n.value {
                    Value::Owned(a) => a.len() * std::mem::size_of::<F>(),
                    Value::Param(_) | Value::Released(_) => 0,
                };
                let mask = n.checkpoint.as_ref().map_or(0, |c| c.segment.mask.len());
                value + n.op.as_ref().map_or(0, |op| op.saved_bytes()) + mask
            })
            .sum()
    }

    // ANCHOR: backward
    /// Reverse-mode pass from a one-element `loss`: adds d(loss)/d(param) into `grads` for every
    /// trainable parameter the loss depends on. Gradients accumulate across calls until
    /// [`Grads::zero`], so micro-batches can be summed.
    pub fn backward(&self, loss: Var, grads: &mut Grads<F>) -> Result<()> {
        self.backward_inner(loss, None, grads, None).map(|_| ())
    }

    /// [`Tape::backward`] on a tape with checkpointed segments: `recompute` runs each one's
    /// forward again.
    pub fn backward_recomputing(
        &self,
        loss: Var,
        grads: &mut Grads<F>,
        recompute: &dyn Recompute<F>,
    ) -> Result<()> {
        self.backward_inner(loss, None, grads, Some(recompute))
            .map(|_| ())
    }

    /// The reverse pass from `out`, seeded with `seed` (ones for a loss); returns the gradient
    /// left on the node `out` was computed from when that is a leaf input (a segment's input).
    fn backward_inner(
        &self,
        out: Var,
        seed: Option<ArrayD<F>>,
        grads: &mut Grads<F>,
        recompute: Option<&dyn Recompute<F>>,
    ) -> Result<Vec<Option<ArrayD<F>>>> {
        let n = out.0 + 1;
        if seed.is_none() && self.value(out).len() != 1 {
            return invalid(
                "backward",
                format!(
                    "loss must have one element, got shape {}",
                    fmt_shape(self.shape(out))
                ),
            );
        }
        if grads.slots.len() != self.store.len() {
            return Err(Error::Invalid {
                op: "backward",
                detail: format!(
                    "grads hold {} slots but the store has {} parameters",
                    grads.slots.len(),
                    self.store.len()
                ),
            });
        }
        if !self.nodes[out.0].requires_grad {
            return invalid(
                "backward",
                "the loss depends on no trainable parameter (all frozen, or no-grad mode)",
            );
        }
        if recompute.is_none() && self.nodes[..n].iter().any(|x| x.checkpoint.is_some()) {
            return invalid(
                "backward",
                "the tape has checkpointed segments: call backward_recomputing with the model's Recompute",
            );
        }
        let mut slots: Vec<Option<ArrayD<F>>> = (0..n).map(|_| None).collect();
        // Parameter gradients accumulate straight into the caller's buffers: move them in.
        for (&id, &v) in &self.param_vars {
            if v.0 < n && self.nodes[v.0].requires_grad {
                slots[v.0] = grads.slots[id.0].take();
            }
        }
        let seed = seed.unwrap_or_else(|| ArrayD::from_elem(IxDyn(self.shape(out)), F::one()));
        BackwardCtx {
            nodes: &self.nodes,
            grads: &mut slots,
        }
        .accumulate(out, seed);
        let mut failed = None;
        for i in (0..n).rev() {
            let node = &self.nodes[i];
            if node.op.is_none() && node.checkpoint.is_none() {
                continue;
            }
            let Some(g) = slots[i].take() else { continue };
            if let Some(op) = &node.op {
                let y = match &node.value {
                    Value::Released(_) => ArrayViewD::from_shape(IxDyn(&[0]), &[]).expect("empty"),
                    _ => node.view(),
                };
                op.backward(
                    &mut BackwardCtx {
                        nodes: &self.nodes,
                        grads: &mut slots,
                    },
                    y,
                    &g,
                );
            } else if let (Some(c), Some(rc)) = (&node.checkpoint, recompute) {
                if let Err(e) = self.backward_segment(c, g, &mut slots, rc) {
                    failed = Some(e);
                    break;
                }
            }
        }
        for (&id, &v) in &self.param_vars {
            if v.0 < n && self.nodes[v.0].requires_grad {
                grads.slots[id.0] = slots[v.0].take();
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(slots),
        }
    }
    // ANCHOR_END: backward

    // ANCHOR: backward_segment
    /// Backward through a checkpointed segment: its forward again on a fresh tape, recorded,
    /// from the kept input and with the same dropout stream, then its backward seeded with the
    /// output's gradient `g`. The parameters' gradient buffers are lent to it, so they
    /// accumulate in the same order as without checkpointing.
    fn backward_segment(
        &self,
        c: &Checkpoint,
        g: ArrayD<F>,
        slots: &mut [Option<ArrayD<F>>],
        recompute: &dyn Recompute<F>,
    ) -> Result<()> {
        let mut sub = Tape::new(self.store);
        sub.train = self.train;
        sub.rng = c.rng.clone();
        let needs_x = self.nodes[c.x.0].requires_grad;
        let x = sub.leaf(self.value(c.x).to_owned(), needs_x);
        let y = recompute.recompute(&mut sub, &c.segment, x)?;
        if sub.shape(y) != g.shape() {
            return invalid(
                "backward",
                format!(
                    "segment {} recomputed to shape {}, its forward gave {}",
                    c.segment.index,
                    fmt_shape(sub.shape(y)),
                    fmt_shape(g.shape())
                ),
            );
        }
        let mut lent = Grads::new(self.store);
        for &(id, v) in &c.params {
            lent.slots[id.0] = slots[v.0].take();
        }
        let result = sub.backward_inner(y, Some(g), &mut lent, None);
        for &(id, v) in &c.params {
            slots[v.0] = lent.slots[id.0].take();
        }
        let mut sub_slots = result?;
        if needs_x {
            if let Some(gx) = sub_slots[x.0].take() {
                BackwardCtx {
                    nodes: &self.nodes,
                    grads: slots,
                }
                .accumulate(c.x, gx);
            }
        }
        Ok(())
    }
    // ANCHOR_END: backward_segment
}
