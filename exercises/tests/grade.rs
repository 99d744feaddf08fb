//! The grading: one module per exercise under `graders/`, run against the exercises compiled as
//! the `tunelab_exercises` library. This is an integration test on purpose: it links the library
//! as built *without* the dev-dependencies, so an exercise cannot see tunelab (only the graders
//! can). Test names are `graders::<exercise>::<check>`, which `tunelab exercises` reads.

// The graders name each exercise as `crate::<exercise>`, as when they lived inside the library.
pub use tunelab_exercises::*;

#[path = "../graders/mod.rs"]
mod graders;
