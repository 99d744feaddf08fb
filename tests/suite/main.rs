//! The integration tests: one binary, one module per concern (`cargo test --test suite MODULE::`).
//!
//! One binary links the crate once; 25 binaries linked it 25 times.

mod adapter_io;
mod align;
mod autograd_oracle;
// The shipped base models' fine-tuning runs are the suite's longest tests; libtest starts tests
// in name order, so this module's name sorts early and they do not hold up the end of the run.
mod base_models;
mod batch;
mod book;
mod checkpoint;
mod common;
mod compare;
mod data_interview;
mod durability;
mod estimate;
mod frozen;
mod fuzz;
mod generate;
mod gradcheck;
mod grpo;
mod hand_worked;
mod hf_parity;
mod hostile_inputs;
mod interview;
mod kernels;
mod layering;
mod limits;
mod listings;
mod lora_variants;
mod loss;
mod memory_ledger;
mod merge;
mod methods_interview;
mod metrics;
mod model;
mod neftune;
mod nf4;
mod optim;
mod peft;
mod peft_methods;
mod pitfall;
mod preference;
mod prefix_prompt;
mod qlora;
mod retention;
mod reward;
mod sweep;
mod systems_interview;
mod tape;
mod tokenizer;
mod trainer;
mod trainer_golden;
