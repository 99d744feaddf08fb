//! The points where a fine-tuning method reparameterizes the model.
//!
//! The transformer calls these hooks at fixed places and never asks which method is active, the
//! way PyTorch forward hooks or burn's reparameterizers work. Every hook has an identity default,
//! so the plain model is `&NoHooks`. A method (LoRA, adapters, IA3, prefix or prompt tuning)
//! implements the hooks it needs with its own parameters:
//!
//! | hook | sees | used by |
//! |---|---|---|
//! | [`Hooks::linear`] | a Linear's input and output, and which Linear | LoRA, DoRA, IA3 (k, v), adapters (after attention/MLP output) |
//! | [`Hooks::mlp_hidden`] | the MLP's activations (B, T, d_ff) | IA3 |
//! | [`Hooks::key_value`] | one layer's keys and values (B, NH, S, HS) | prefix tuning (prepends), IA3 |
//! | [`Hooks::token_embeddings`] | the token embeddings (B, T, C), before positions are added | NEFTune's noise (a training option, [`crate::train::neftune`]) |
//! | [`Hooks::embeddings`] | the embedded input (B, T, C) | prompt tuning (prepends soft prompts) |
//!
//! The Trainer (`crate::train::trainer`) calls three more around each optimizer step, for the
//! methods that are more than a reparameterization; they too default to doing nothing:
//!
//! | hook | when | used by |
//! |---|---|---|
//! | [`Hooks::regularizer`] | after each micro-batch's loss: a term added to it | AdaLoRA (orthogonality of P and Q) |
//! | [`Hooks::project_grads`] | after the gradients are summed and clipped, before the optimizer step | LoRA-FA (projects B's gradient) |
//! | [`Hooks::after_step`] | after the optimizer step, the step's gradients still there | AdaLoRA (importance scores, rank budget) |

use crate::autodiff::{Grads, ParamStore, Tape, Var};
use crate::error::Result;
use crate::tensor::Float;

/// What a Linear does in the block, independent of the weight-naming scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// GPT-2's fused query/key/value projection, output (…, 3C) laid out [q | k | v].
    Qkv,
    Query,
    Key,
    Value,
    /// The attention output projection.
    AttnOut,
    /// The MLP's first Linear (C → d_ff).
    Fc,
    /// The MLP's second Linear (d_ff → C).
    Proj,
    /// Any other Linear (pooler, task heads).
    Other,
}

impl Role {
    /// The short names users give as LoRA targets: q, k, v, o, fc, proj.
    pub fn short(self) -> &'static str {
        match self {
            Role::Qkv => "qkv",
            Role::Query => "q",
            Role::Key => "k",
            Role::Value => "v",
            Role::AttnOut => "o",
            Role::Fc => "fc",
            Role::Proj => "proj",
            Role::Other => "other",
        }
    }
}

/// Where a hook is being called.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The block index, or `None` outside the blocks.
    pub layer: Option<usize>,
    /// The Hugging Face module path, e.g. `h.3.attn.c_attn` or `encoder.layer.0.attention.self.query`.
    pub module: &'a str,
    pub role: Role,
}

// ANCHOR: hooks
/// Reparameterization points; every default is the identity.
pub trait Hooks<F: Float> {
    /// Called after every Linear with its input `x` and output `y`; returns the output to use.
    fn linear(&self, _tape: &mut Tape<'_, F>, _site: &Site<'_>, _x: Var, y: Var) -> Result<Var> {
        Ok(y)
    }

    /// Called on the MLP activations of block `layer`.
    fn mlp_hidden(&self, _tape: &mut Tape<'_, F>, _layer: usize, h: Var) -> Result<Var> {
        Ok(h)
    }

    /// Called on block `layer`'s keys and values, (B, NH, T, HS) each, before attention. May
    /// return longer ones (B, NH, S, HS) with S > T: the extra keys come first and every query
    /// may attend to them.
    fn key_value(
        &self,
        _tape: &mut Tape<'_, F>,
        _layer: usize,
        k: Var,
        v: Var,
    ) -> Result<(Var, Var)> {
        Ok((k, v))
    }

    /// Called on the token embeddings (B, T, C), before the position (and segment) embeddings
    /// are added: Hugging Face's forward hooks on `get_input_embeddings()` see this tensor.
    fn token_embeddings(&self, _tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        Ok(x)
    }

    /// Called on the embedded input (B, T, C). May prepend P virtual tokens, returning
    /// (B, P + T, C); the model strips them again from its output so heads and labels still see T.
    fn embeddings(&self, _tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        Ok(x)
    }

    /// Training only: a scalar the Trainer adds to every micro-batch's mean loss, computed from
    /// the method's parameters on `tape` (so it is differentiated with the loss).
    fn regularizer(&self, _tape: &mut Tape<'_, F>) -> Result<Option<Var>> {
        Ok(None)
    }

    /// Training only: rewrites the step's gradients (summed over its micro-batches and
    /// clipped) just before the optimizer uses them.
    fn project_grads(&self, _store: &ParamStore<F>, _grads: &mut Grads<F>) -> Result<()> {
        Ok(())
    }

    /// Training only: runs after optimizer step `step` (from 0) of `total_steps`, with that
    /// step's gradients still in `grads`; may change parameter values in `store`.
    fn after_step(
        &self,
        _store: &mut ParamStore<F>,
        _grads: &Grads<F>,
        _step: usize,
        _total_steps: usize,
    ) -> Result<()> {
        Ok(())
    }
}
// ANCHOR_END: hooks

/// The plain model.
pub struct NoHooks;

impl<F: Float> Hooks<F> for NoHooks {}
