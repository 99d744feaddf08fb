//! Dropout: in training, each element is zeroed with probability p and the survivors scaled by
//! 1/(1 − p), so the expectation is unchanged; in evaluation it is the identity (no node at all).
//! The mask comes from the tape's seeded RNG, so runs are reproducible.
//!
//! Backward: dx = g ⊙ mask, with the same scaled mask.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, Result};
use crate::tensor::Float;
use ndarray::{ArrayD, ArrayViewD};
use rand::Rng;

struct Dropout<F: Float> {
    x: Var,
    mask: ArrayD<F>,
}

impl<F: Float> Backward<F> for Dropout<F> {
    // The mask is the cache.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn saved_bytes(&self) -> usize {
        self.mask.len() * std::mem::size_of::<F>()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        ctx.accumulate(self.x, g * &self.mask);
    }
}

impl<F: Float> Tape<'_, F> {
    /// Dropout with drop probability `p` in [0, 1); the identity in evaluation mode or at p = 0.
    pub fn dropout(&mut self, x: Var, p: f64) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return invalid("dropout", format!("probability {p} is outside [0, 1)"));
        }
        if !self.is_train() || p == 0.0 {
            return Ok(x);
        }
        let keep = F::of(1.0 / (1.0 - p));
        let shape = self.value(x).raw_dim();
        let rng = &mut self.rng;
        let mask = ArrayD::from_shape_simple_fn(shape, || {
            if rng.random::<f64>() < p {
                F::zero()
            } else {
                keep
            }
        });
        let y = &self.value(x) * &mask;
        Ok(self.push("dropout", y, &[x], Dropout { x, mask }))
    }
}
