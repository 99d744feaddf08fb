//! Reverse-mode automatic differentiation, written from scratch.
//!
//! - [`ParamStore`]: named parameters, each trainable or frozen; [`Grads`]: their gradients.
//! - [`Tape`]: records ops as they run (define-by-run) and replays them backward.
//! - [`ops`]: every op a transformer and the fine-tuning methods need, forward and backward
//!   side by side; heavy ones (matmul, layer norm, softmax, attention, cross-entropy, embedding)
//!   are fused pairs that save an explicit cache in forward for backward.
//! - [`gradcheck`]: finite-difference checks of every op in f64.
//!
//! ```
//! use ndarray::array;
//! use tunelab::{Grads, ParamStore, Tape};
//!
//! let mut store = ParamStore::<f64>::new();
//! let w = store.add("w", array![[2.0], [3.0]].into_dyn(), true).unwrap();
//! let mut tape = Tape::new(&store);
//! let x = tape.constant(array![[1.0, 1.0]].into_dyn());
//! let wv = tape.param(w);
//! let y = tape.matmul(x, wv).unwrap(); // (1, 1): 2 + 3
//! let loss = tape.sum_all(y).unwrap();
//! let mut grads = Grads::new(&store);
//! tape.backward(loss, &mut grads).unwrap();
//! assert_eq!(tape.scalar(loss).unwrap(), 5.0);
//! assert_eq!(grads.get(w).unwrap().as_slice().unwrap(), &[1.0, 1.0]);
//! ```

pub mod gradcheck;
pub mod ops;
mod param;
mod tape;

pub use ops::attention::{AttnMask, SHARED_DOCUMENT};
pub use ops::cross_entropy::IGNORE_INDEX;
pub use ops::unary::Unary;
pub use param::{Grads, Param, ParamId, ParamStore};
pub use tape::{Recompute, Segment, Tape, Var};
