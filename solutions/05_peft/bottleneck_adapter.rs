//! # A bottleneck adapter
//!
//! Houlsby et al. (2019) insert a small MLP with a residual connection after a sublayer's output,
//! and train only it:
//!
//!     h ↦ h + up(act(down(h)))      down: C → m,  up: m → C,  with biases
//!
//! The bottleneck m is much smaller than C, so an adapter has 2·C·m + m + C parameters. `up`
//! starts at exactly zero (weight and bias), so the adapter is the identity and the model is
//! unchanged at step 0, the same idea as LoRA's B = 0; `down` starts random (uniform in ±1/√C)
//! so that `up` receives a gradient from the first step. Houlsby puts two per block (after
//! attention and after the MLP, GELU); Pfeiffer one per block (after the MLP, ReLU). This
//! exercise uses ReLU.
//!
//! Unlike LoRA, an adapter cannot be merged into a weight (the non-linearity is in the way):
//! it adds a little latency at inference.
//!
//! Graded against the Pfeiffer adapter of `tunelab::peft::adapter` (`Adapter::forward`) on
//! random weights, the identity at init, and the parameter count of a model's adapters.

use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::Rng;

/// One adapter's tensors, stored as PyTorch's nn.Linear stores them: (out, in).
#[derive(Debug, Clone)]
pub struct Bottleneck {
    /// (m, C)
    pub down_weight: Array2<f64>,
    /// (m)
    pub down_bias: Array1<f64>,
    /// (C, m)
    pub up_weight: Array2<f64>,
    /// (C)
    pub up_bias: Array1<f64>,
}

/// h + up(relu(down(h))) for h (N, C).
pub fn adapter_forward(h: &Array2<f64>, ad: &Bottleneck) -> Array2<f64> {
    let z = (h.dot(&ad.down_weight.t()) + &ad.down_bias).mapv(|x| x.max(0.0));
    h + &(z.dot(&ad.up_weight.t()) + &ad.up_bias)
}

/// A fresh adapter for width C and bottleneck m: down uniform in ±1/√C, down bias and all of
/// up zero, so that [`adapter_forward`] is the identity.
pub fn adapter_init(c: usize, m: usize, rng: &mut StdRng) -> Bottleneck {
    let bound = 1.0 / (c as f64).sqrt();
    Bottleneck {
        down_weight: Array2::from_shape_fn((m, c), |_| rng.random_range(-bound..bound)),
        down_bias: Array1::zeros(m),
        up_weight: Array2::zeros((c, m)),
        up_bias: Array1::zeros(c),
    }
}

/// Trainable parameters of one adapter: 2·C·m + m + C.
pub fn adapter_params(c: usize, m: usize) -> usize {
    2 * c * m + m + c
}
