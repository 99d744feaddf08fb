//! The task losses, one file per loss, each a function over tape [`Var`](crate::Var)s that
//! returns a 0-d loss ready for [`Tape::backward`](crate::Tape::backward).
//!
//! The seed notes (section 3.1) give two formulas; the lab adds the two that the other tasks need:
//!
//! | loss | logits | labels | file |
//! |---|---|---|---|
//! | sequence classification, L = −(1/N) Σᵢ log softmax(zᵢ)\[yᵢ\] | (B, K) | B class indices | [`classification`] |
//! | causal LM, L = −Σₜ log P(yₜ \| y<ₜ, X), prompt masked | (B, T, V) | (B, T) ids | [`causal_lm`] |
//! | token classification (NER) | (B, T, K) | (B, T) tags | [`token_classification`] |
//! | extractive QA, (CE(start) + CE(end)) / 2 | (B, T) twice | B starts, B ends | [`span`] |
//! | response log-probabilities log π(y \| x), for preference tuning and RL | (B, T, V) | (B, T) ids | [`logprobs`] |
//! | preference objectives (DPO, cDPO, IPO, SimPO, ORPO, KTO) on those log-probabilities | (B,) per response | pairs or labels | [`preference`] |
//! | reward model (Bradley–Terry), L = −mean log σ(r_c − r_r) | (N,) twice | — | [`reward`] |
//! | GRPO, the clipped ratio objective with group-normalised advantages and a k3 KL penalty | (B, T − 1) log-probs | advantages (B,) | [`grpo`] |
//!
//! Every loss is built from tape ops, so no loss has a hand-written backward of its own: the plain
//! cases use the fused [`Tape::cross_entropy`](crate::Tape::cross_entropy) (softmax and
//! cross-entropy in one op, backward dz = (softmax(z) − onehot(y)) / M), and the variants
//! (label smoothing, class weights, masks) multiply or add constant tensors around
//! `log_softmax` and sum. Each file derives its gradient in its docs; `tests/suite/loss.rs` checks
//! every one against central differences in f64 and against small cases worked out by hand.
//!
//! Labels use the ignore index [`IGNORE_INDEX`](crate::autodiff::IGNORE_INDEX) (−100, as in
//! PyTorch and Hugging Face) for "no loss here": padding, prompt tokens, sub-word continuations.
//! A mean over zero counted targets is 0 (PyTorch gives NaN), so a batch that happens to hold
//! no target does not poison training.

pub mod causal_lm;
pub mod classification;
pub mod grpo;
pub mod logprobs;
pub mod preference;
pub mod reward;
pub mod span;
pub mod token_classification;

pub use causal_lm::{
    causal_lm_loss, causal_lm_loss_sum, instruction_labels, instruction_loss, lm_labels,
};
pub use classification::{classification_loss, ClassificationLoss};
pub use logprobs::{completion_mask, sequence_logps, token_logps};
pub use reward::{reward_loss, RewardLoss};
pub use span::{span_loss, MASK_OFFSET};
pub use token_classification::{token_classification_loss, token_classification_loss_with};
