//! Gradient norms and clipping by global norm, as `torch.nn.utils.clip_grad_norm_`.
//!
//! The global norm treats all gradients as one long vector:
//!
//! ```text
//! norm = sqrt(sum over params, sum over elements of g^2)
//! coef = max_norm / (norm + 1e-6)
//! if coef < 1:  g = g * coef        for every gradient
//! ```
//!
//! Scaling every gradient by the same factor keeps the update's direction and only shortens it,
//! which is why clipping tames exploding gradients (a sudden huge step after a loss spike)
//! without biasing training. The `1e-6` keeps the division safe and means a norm of exactly
//! `max_norm` is scaled by a hair under 1, as in PyTorch.
//!
//! Norms are accumulated in f64 whatever the gradient type, so the logged value does not depend
//! on summation order. [`grad_norms`] gives one norm per parameter: the per-layer view that
//! shows where gradients vanish or explode.

use crate::autodiff::{Grads, ParamStore};
use crate::error::{invalid, Result};
use crate::tensor::Float;

/// Added to the norm before dividing, as PyTorch does.
pub const CLIP_EPS: f64 = 1e-6;

/// Sum of squares of one gradient, in f64.
fn sum_sq<F: Float>(g: &ndarray::ArrayD<F>) -> f64 {
    g.iter()
        .map(|&x| {
            let x = Float::as_f64(x);
            x * x
        })
        .sum()
}

/// The global L2 norm of all gradients.
pub fn grad_norm<F: Float>(grads: &Grads<F>) -> f64 {
    grads
        .ids()
        .filter_map(|id| grads.get(id))
        .map(sum_sq)
        .sum::<f64>()
        .sqrt()
}

// ANCHOR: clip
/// Clips all gradients together to global norm `max_norm` and returns the norm *before*
/// clipping (the value to log). `max_norm` must be finite and > 0.
///
/// A non-finite norm (a NaN or infinite gradient) is returned as is and the gradients are left
/// alone: scaling cannot repair them, and the trainer must stop on it (PyTorch would multiply
/// by NaN or 0 and carry on).
pub fn clip_grad_norm<F: Float>(grads: &mut Grads<F>, max_norm: f64) -> Result<f64> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return invalid(
            "clip_grad_norm",
            format!("max_norm must be finite and > 0, got {max_norm}"),
        );
    }
    let norm = grad_norm(grads);
    if norm.is_finite() {
        let coef = max_norm / (norm + CLIP_EPS);
        if coef < 1.0 {
            grads.scale(F::of(coef));
        }
    }
    Ok(norm)
}
// ANCHOR_END: clip

/// The L2 norm of each parameter's gradient, in store order, named: `(name, norm)` for every
/// parameter that holds a gradient.
pub fn grad_norms<F: Float>(store: &ParamStore<F>, grads: &Grads<F>) -> Vec<(String, f64)> {
    grads
        .ids()
        .filter_map(|id| {
            let g = grads.get(id)?;
            Some((store.name(id).to_string(), sum_sq(g).sqrt()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn one_grad(g: ndarray::ArrayD<f64>) -> (ParamStore<f64>, Grads<f64>) {
        let mut store = ParamStore::new();
        let id = store
            .add("w", ndarray::ArrayD::zeros(g.raw_dim()), true)
            .unwrap();
        let mut grads = Grads::new(&store);
        grads.slots[id.index()] = Some(g);
        (store, grads)
    }

    #[test]
    fn three_four_five() {
        let (store, mut grads) = one_grad(array![3.0, 4.0].into_dyn());
        assert_eq!(grad_norms(&store, &grads), [("w".to_string(), 5.0)]);
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let g = grads.get(store.id("w").unwrap()).unwrap();
        let c = 1.0 / (5.0 + CLIP_EPS);
        assert_eq!(g.as_slice().unwrap(), &[3.0 * c, 4.0 * c]);
        assert!((grad_norm(&grads) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn below_max_norm_is_untouched() {
        let (_, mut grads) = one_grad(array![3.0, 4.0].into_dyn());
        assert_eq!(clip_grad_norm(&mut grads, 10.0).unwrap(), 5.0);
        assert_eq!(
            grads.slots[0].as_ref().unwrap().as_slice().unwrap(),
            &[3.0, 4.0]
        );
    }

    #[test]
    fn bad_max_norm_and_nan() {
        let (_, mut grads) = one_grad(array![f64::NAN, 1.0].into_dyn());
        assert!(clip_grad_norm(&mut grads, 0.0).is_err());
        assert!(clip_grad_norm(&mut grads, 1.0).unwrap().is_nan());
        assert_eq!(grads.slots[0].as_ref().unwrap()[1], 1.0);
    }
}
