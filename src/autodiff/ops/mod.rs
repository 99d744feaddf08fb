//! The ops, one file per family. Each file holds the forward (a `Tape` method) and the
//! hand-written backward (a `Backward` impl) side by side, with the derivation in its docs.

pub mod attention;
pub mod binary;
pub mod cross_entropy;
pub mod dropout;
pub mod embedding;
pub mod layernorm;
pub mod matmul;
pub mod minmax;
pub mod quant_matmul;
pub mod reduce;
pub mod shape;
pub mod softmax;
pub mod unary;
