//! Optimisation: what happens between `tape.backward` and the next forward pass.
//!
//! One training step, in the order a trainer calls these:
//!
//! 1. `tape.backward(loss, &mut grads)` fills [`Grads`] for the trainable parameters;
//! 2. [`grad_norms`] reports each parameter's gradient norm (for grad-norm logging) and
//!    [`clip_grad_norm`] rescales all gradients together when their global norm is too large
//!    (the guard against exploding gradients);
//! 3. [`Schedule::lr`] gives this step's learning rate (warmup, then constant, linear or cosine
//!    decay);
//! 4. [`Optimizer::step`] moves the parameters: [`Sgd`] (with momentum, optionally Nesterov) or
//!    [`AdamW`] (with per-parameter learning-rate multipliers for LoRA+ and weight-decay
//!    exclusion for biases and LayerNorm weights).
//!
//! Every formula matches PyTorch (`torch.optim.SGD`, `torch.optim.AdamW`,
//! `torch.nn.utils.clip_grad_norm_`) and Hugging Face transformers' schedules; `tests/suite/optim.rs`
//! replays golden files written by `tools/optim_golden.py` and checks every parameter after
//! every step to 1e-6.
//!
//! **Frozen means untouched.** An optimizer updates a parameter only when it is trainable *and*
//! holds a gradient. Frozen parameters are never written (they stay bit-identical) and get no
//! optimizer state, so AdamW's memory (two tensors per parameter) scales with the trainable
//! parameters only: the reason LoRA's optimizer state is tiny. [`Optimizer::state_bytes`]
//! measures it.
//!
//! **Checkpoints.** [`Optimizer::state`] lists the state as named tensors,
//! `<param name>.exp_avg`, `<param name>.exp_avg_sq`, `<param name>.momentum_buffer`,
//! `<param name>.step` (AdamW's per-parameter update count, as in PyTorch's state dict) and a
//! 0-d `step` (number of [`Optimizer::step`] calls), ready for safetensors;
//! [`Optimizer::load_state`] restores them so a resumed run continues exactly where it stopped.
//! Counts are stored as floats: exact up to 2^24 steps in f32. The Trainer holds its optimizer as
//! a `Box<dyn Optimizer<F>>` and saves and restores it only through these two methods
//! (`crate::io::checkpoint::save_training`), so either optimizer resumes.
//!
//! ```
//! use ndarray::array;
//! use tunelab::optim::{AdamW, AdamWConfig, Optimizer, Schedule};
//! use tunelab::{Grads, ParamStore, Tape};
//!
//! let mut store = ParamStore::<f64>::new();
//! let w = store.add("w", array![1.0, -1.0].into_dyn(), true).unwrap();
//! let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
//! let schedule = Schedule::Cosine { warmup_steps: 1, total_steps: 10 };
//! for step in 0..10 {
//!     // loss = sum(w * w): gradient 2w
//!     let mut grads = Grads::new(&store);
//!     let mut tape = Tape::new(&store);
//!     let wv = tape.param(w);
//!     let sq = tape.mul(wv, wv).unwrap();
//!     let loss = tape.sum_all(sq).unwrap();
//!     tape.backward(loss, &mut grads).unwrap();
//!     drop(tape);
//!     opt.step(&mut store, &grads, schedule.lr(1e-1, step));
//! }
//! assert!(store.value(w)[0] < 1.0 && store.value(w)[1] > -1.0);
//! assert_eq!(opt.state_bytes(), 2 * 2 * 8); // exp_avg and exp_avg_sq, 2 f64 each
//! ```

mod adamw;
mod clip;
mod optimizer;
mod schedule;
mod sgd;

pub use adamw::{is_no_decay_name, AdamW, AdamWConfig, ParamOptions};
pub use clip::{clip_grad_norm, grad_norm, grad_norms, CLIP_EPS};
pub use optimizer::Optimizer;
pub use schedule::Schedule;
pub use sgd::{Sgd, SgdConfig};
