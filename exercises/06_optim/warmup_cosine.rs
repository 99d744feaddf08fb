//! # Learning-rate warmup, then cosine decay
//!
//! Fine-tuning rarely uses a constant learning rate. Adam's first steps move every weight by
//! about lr whatever the gradient, before its moment estimates mean anything, and a pre-trained
//! model is easily knocked out of its good region (that is where "too high a learning rate
//! makes the model forget" starts). So the rate **warms up** linearly from 0, then **decays**
//! along half a cosine to 0 at the last step. Hugging Face's
//! `get_cosine_schedule_with_warmup`, with W warmup steps and N total steps, for step s counted
//! from 0:
//!
//!     s < W:   factor = s / max(1, W)
//!     s ≥ W:   progress = (s − W) / max(1, N − W)
//!              factor = max(0, ½·(1 + cos(π · progress)))
//!
//! and lr(s) = base_lr · factor(s). The max(1, ·) keep W = 0 and N ≤ W from dividing by zero.
//!
//! Graded against `tunelab::optim::Schedule::Cosine` for many (W, N) pairs and every step.

/// The multiplier of the base learning rate at optimizer step `step` (from 0).
///
///     W = 10, N = 110:  step 0 → 0,  step 5 → 0.5,  step 10 → 1,  step 60 → 0.5,  step 110 → 0
pub fn warmup_cosine(step: usize, warmup: usize, total: usize) -> f64 {
    // TODO: the two branches above, in f64; use std::f64::consts::PI.
    todo!()
}
