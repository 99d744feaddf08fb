//! Experiments a user runs from the command line. Each returns its measurements as data so the
//! CLI can print a table or JSON and tests can assert the claims it prints.

pub mod align;
pub mod bench;
pub mod compare;
pub mod embed;
pub mod estimate;
pub mod evidence;
pub mod exercises;
pub mod finetune;
pub mod forgetting;
pub mod gradcheck;
pub mod interview;
pub mod lanes;
pub mod merge;
pub mod merge_compare;
pub mod merge_linalg;
pub mod neftune;
pub mod pitfall;
pub mod plot;
pub mod report;
pub mod runs;
pub mod serving;
pub mod settings;
pub mod stats;
pub mod sweep;
