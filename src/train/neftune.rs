//! NEFTune (Jain et al., 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"):
//! during training, add uniform noise to the token embeddings,
//!
//! ```text
//! x ← x + ε,   ε ~ uniform(−mag, mag) elementwise,   mag = α / √(L · d)
//! ```
//!
//! with L the batch's (padded) sequence length, d the hidden size and α
//! `neftune_noise_alpha`. Hugging Face's Trainer registers `neftune_post_forward_hook` on
//! `model.get_input_embeddings()` (the token embedding table, before position embeddings are
//! added; `dims = output.size(1) * output.size(2)`) and adds the noise only when the module is
//! in training mode; evaluation and generation see the embeddings as they are.
//!
//! NEFTune is not a fine-tuning method: it composes with any of them. The Trainer wraps the
//! method's hooks in [`Neftune`], which passes every hook through and adds the noise at
//! [`Hooks::token_embeddings`] when the tape is in training mode. The noise comes from the
//! tape's own random stream, which the Trainer seeds per micro-batch from the run's seed, so a
//! run is deterministic per seed. The noise is a constant on the tape: gradients flow through
//! x + ε exactly as through x.

use crate::autodiff::{Grads, ParamStore, Tape, Var};
use crate::error::Result;
use crate::nn::{Hooks, Site};
use crate::tensor::Float;
use ndarray::ArrayD;
use rand::Rng;

/// mag = α / √(L · d), the bound of NEFTune's noise for sequences of length `l` and hidden
/// size `d`.
pub fn noise_magnitude(alpha: f64, l: usize, d: usize) -> f64 {
    alpha / ((l * d) as f64).sqrt()
}

// ANCHOR: noise
/// x + uniform(−mag, mag) noise for x (B, L, d) in training mode; x itself otherwise.
pub fn add_noise<F: Float>(tape: &mut Tape<'_, F>, x: Var, alpha: f64) -> Result<Var> {
    if !tape.is_train() || alpha == 0.0 {
        return Ok(x);
    }
    let shape = tape.shape(x).to_vec();
    let (l, d) = match shape.as_slice() {
        [.., l, d] => (*l, *d),
        _ => return Ok(x),
    };
    let mag = noise_magnitude(alpha, l, d);
    let rng = &mut tape.rng;
    let noise = ArrayD::from_shape_simple_fn(shape, || F::of(rng.random_range(-mag..=mag)));
    let noise = tape.constant(noise);
    tape.add(x, noise)
}
// ANCHOR_END: noise

/// A method's hooks with NEFTune's noise on the token embeddings.
pub struct Neftune<'a, F: Float> {
    pub inner: &'a dyn Hooks<F>,
    /// `neftune_noise_alpha`.
    pub alpha: f64,
}

impl<F: Float> Hooks<F> for Neftune<'_, F> {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        self.inner.linear(tape, site, x, y)
    }

    fn mlp_hidden(&self, tape: &mut Tape<'_, F>, layer: usize, h: Var) -> Result<Var> {
        self.inner.mlp_hidden(tape, layer, h)
    }

    fn key_value(
        &self,
        tape: &mut Tape<'_, F>,
        layer: usize,
        k: Var,
        v: Var,
    ) -> Result<(Var, Var)> {
        self.inner.key_value(tape, layer, k, v)
    }

    fn token_embeddings(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let x = self.inner.token_embeddings(tape, x)?;
        add_noise(tape, x, self.alpha)
    }

    fn embeddings(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        self.inner.embeddings(tape, x)
    }

    fn regularizer(&self, tape: &mut Tape<'_, F>) -> Result<Option<Var>> {
        self.inner.regularizer(tape)
    }

    fn project_grads(&self, store: &ParamStore<F>, grads: &mut Grads<F>) -> Result<()> {
        self.inner.project_grads(store, grads)
    }

    fn after_step(
        &self,
        store: &mut ParamStore<F>,
        grads: &Grads<F>,
        step: usize,
        total_steps: usize,
    ) -> Result<()> {
        self.inner.after_step(store, grads, step, total_steps)
    }
}
