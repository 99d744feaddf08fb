//! The tape: a define-by-run record of every op, replayed in reverse by [`Tape::backward`].
//!
//! Nodes are appended in the order ops run, so the node list is already a topological order and
//! backward is one reverse loop. Each node keeps its value and, only when some trainable
//! parameter lies upstream of it, the op that made it (with the cache its backward needs).
//! A node that no trainable parameter reaches records nothing and is skipped in backward, and
//! each op's backward computes only the input gradients that are needed: a frozen Linear never
//! computes its weight gradient. In no-grad mode nothing is recorded at all.

use super::param::{Grads, ParamId, ParamStore};
use crate::error::{invalid, Error, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;

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
}
// ANCHOR_END: backward_trait

enum Value<'p, F: Float> {
    Owned(ArrayD<F>),
    Param(&'p ArrayD<F>),
}

struct Node<'p, F: Float> {
    value: Value<'p, F>,
    requires_grad: bool,
    op: Option<Box<dyn Backward<F>>>,
    name: &'static str,
}

impl<F: Float> Node<'_, F> {
    fn view(&self) -> ArrayViewD<'_, F> {
        match &self.value {
            Value::Owned(a) => a.view(),
            Value::Param(a) => a.view(),
        }
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

    /// Whether `v` needs a gradient (some trainable parameter lies upstream of it).
    pub fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// The gradient slot of `v`, zero-filled on first use, for in-place accumulation.
    pub fn grad_mut(&mut self, v: Var) -> &mut ArrayD<F> {
        let shape = self.nodes[v.0].view().raw_dim();
        self.grads[v.0].get_or_insert_with(|| ArrayD::zeros(shape))
    }

    /// Adds the view `g` into the gradient of `v`: in place when the slot exists, one copy
    /// when it is empty.
    pub fn accumulate_view(&mut self, v: Var, g: ArrayViewD<'_, F>) {
        debug_assert_eq!(g.shape(), self.nodes[v.0].view().shape());
        match &mut self.grads[v.0] {
            Some(slot) => *slot += &g,
            slot @ None => *slot = Some(g.as_standard_layout().into_owned()),
        }
    }

    /// Adds `g` into the gradient of `v` (moving it in when the slot is empty).
    pub fn accumulate(&mut self, v: Var, g: ArrayD<F>) {
        debug_assert_eq!(
            g.shape(),
            self.nodes[v.0].view().shape(),
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
        self.nodes.push(Node {
            value: Value::Param(store.value(id)),
            requires_grad: self.grad_enabled && store.is_trainable(id),
            op: None,
            name: "param",
        });
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
        let v = Var(self.nodes.len());
        self.nodes.push(Node {
            value: Value::Owned(value),
            requires_grad: false,
            op: None,
            name: "constant",
        });
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
        let op: Option<Box<dyn Backward<F>>> = if requires_grad {
            Some(Box::new(op))
        } else {
            None
        };
        self.nodes.push(Node {
            value: Value::Owned(value),
            requires_grad,
            op,
            name,
        });
        v
    }
    // ANCHOR_END: push

    /// Whether an op on these inputs will be recorded (so a forward can skip building its cache).
    pub(crate) fn records(&self, inputs: &[Var]) -> bool {
        self.grad_enabled && inputs.iter().any(|v| self.nodes[v.0].requires_grad)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> ArrayViewD<'_, F> {
        self.nodes[v.0].view()
    }

    pub fn shape(&self, v: Var) -> &[usize] {
        match &self.nodes[v.0].value {
            Value::Owned(a) => a.shape(),
            Value::Param(a) => a.shape(),
        }
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
                    Value::Param(_) => 0,
                };
                value + n.op.as_ref().map_or(0, |op| op.saved_bytes())
            })
            .sum()
    }

    // ANCHOR: backward
    /// Reverse-mode pass from a one-element `loss`: adds d(loss)/d(param) into `grads` for every
    /// trainable parameter the loss depends on. Gradients accumulate across calls until
    /// [`Grads::zero`], so micro-batches can be summed.
    pub fn backward(&self, loss: Var, grads: &mut Grads<F>) -> Result<()> {
        let n = loss.0 + 1;
        if self.value(loss).len() != 1 {
            return invalid(
                "backward",
                format!(
                    "loss must have one element, got shape {}",
                    fmt_shape(self.shape(loss))
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
        if !self.nodes[loss.0].requires_grad {
            return invalid(
                "backward",
                "the loss depends on no trainable parameter (all frozen, or no-grad mode)",
            );
        }
        let mut slots: Vec<Option<ArrayD<F>>> = (0..n).map(|_| None).collect();
        // Parameter gradients accumulate straight into the caller's buffers: move them in.
        for (&id, &v) in &self.param_vars {
            if v.0 < n && self.nodes[v.0].requires_grad {
                slots[v.0] = grads.slots[id.0].take();
            }
        }
        let seed = ArrayD::from_elem(IxDyn(self.shape(loss)), F::one());
        BackwardCtx {
            nodes: &self.nodes,
            grads: &mut slots,
        }
        .accumulate(loss, seed);
        for i in (0..n).rev() {
            let Some(op) = &self.nodes[i].op else {
                continue;
            };
            let Some(g) = slots[i].take() else { continue };
            op.backward(
                &mut BackwardCtx {
                    nodes: &self.nodes,
                    grads: &mut slots,
                },
                self.nodes[i].view(),
                &g,
            );
        }
        for (&id, &v) in &self.param_vars {
            if v.0 < n && self.nodes[v.0].requires_grad {
                grads.slots[id.0] = slots[v.0].take();
            }
        }
        Ok(())
    }
    // ANCHOR_END: backward
}
