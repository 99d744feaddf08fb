//! # Merging LoRA into the weight (and taking it back out)
//!
//! After training, the low-rank update can be folded into the frozen weight:
//!
//!     W' = W + s · (B A)ᵀ          W (d_in, d_out), B A (d_out, d_in), s = α / r
//!
//! Then x W' = x W + s·(x Aᵀ) Bᵀ, the LoRA output, computed by one matmul: serving a merged model
//! costs exactly what the base costs, with no extra latency. Unmerging subtracts the same term,
//! which is how one base serves several adapters: merge one, answer, unmerge, merge the next
//! (or keep them unmerged and add each adapter's path per request).
//!
//! (Here W is stored (in, out), GPT-2's layout, so the update is transposed; PyTorch's nn.Linear
//! stores (out, in) and adds s·B A directly.)
//!
//! Graded against `Lora::merge` and `Lora::unmerge` on a small model.

use ndarray::Array2;

/// W + (α/r)·(B A)ᵀ for W (d_in, d_out), A (r, d_in), B (d_out, r).
///
///     W = 0 (2×2), A [[1, 2]], B [[1], [1]], α = 1 → [[1, 1], [2, 2]]
pub fn lora_merge(w: &Array2<f64>, a: &Array2<f64>, b: &Array2<f64>, alpha: f64) -> Array2<f64> {
    let s = alpha / a.nrows() as f64;
    w + &(b.dot(a).t().to_owned() * s)
}

/// The inverse of [`lora_merge`]: W' − (α/r)·(B A)ᵀ.
pub fn lora_unmerge(w: &Array2<f64>, a: &Array2<f64>, b: &Array2<f64>, alpha: f64) -> Array2<f64> {
    let s = alpha / a.nrows() as f64;
    w - &(b.dot(a).t().to_owned() * s)
}
