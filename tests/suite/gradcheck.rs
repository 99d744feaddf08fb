//! One finite-difference gradient check per op, in f64: `cargo test gradcheck` runs them all.
//! The cases live in `tunelab::autodiff::gradcheck::cases`, which `tunelab gradcheck` prints.

use tunelab::autodiff::gradcheck::{cases, run, TOLERANCE};

fn check(op: &str) {
    let results = run(Some(op)).expect("gradient check runs");
    assert!(!results.is_empty(), "no gradcheck case for {op}");
    for r in &results {
        assert!(
            r.passed,
            "{op} {}: max relative error {:.3e} (max abs {:.3e}) exceeds {TOLERANCE:e}",
            r.case, r.max_rel_err, r.max_abs_err
        );
    }
}

macro_rules! gradcheck_tests {
    ($($name:ident => $op:literal),* $(,)?) => {
        $(#[test] fn $name() { check($op); })*

        /// Every op in the suite has its own test above, so a new op cannot go unchecked.
        #[test]
        fn gradcheck_every_op_has_a_test() {
            let tested = [$($op),*];
            for case in cases() {
                assert!(tested.contains(&case.op), "op {} has gradcheck cases but no gradcheck_{} test", case.op, case.op);
            }
        }
    };
}

gradcheck_tests! {
    gradcheck_matmul => "matmul",
    gradcheck_add => "add",
    gradcheck_sub => "sub",
    gradcheck_mul => "mul",
    gradcheck_div => "div",
    gradcheck_minimum => "minimum",
    gradcheck_clamp => "clamp",
    gradcheck_scale => "scale",
    gradcheck_gelu_tanh => "gelu_tanh",
    gradcheck_gelu_erf => "gelu_erf",
    gradcheck_relu => "relu",
    gradcheck_tanh => "tanh",
    gradcheck_sigmoid => "sigmoid",
    gradcheck_log_sigmoid => "log_sigmoid",
    gradcheck_square => "square",
    gradcheck_sqrt => "sqrt",
    gradcheck_exp => "exp",
    gradcheck_log => "log",
    gradcheck_sum => "sum",
    gradcheck_mean => "mean",
    gradcheck_reshape => "reshape",
    gradcheck_permute => "permute",
    gradcheck_transpose => "transpose",
    gradcheck_concat => "concat",
    gradcheck_slice => "slice",
    gradcheck_add_at => "add_at",
    gradcheck_index_select => "index_select",
    gradcheck_embedding => "embedding",
    gradcheck_softmax => "softmax",
    gradcheck_log_softmax => "log_softmax",
    gradcheck_layer_norm => "layer_norm",
    gradcheck_dropout => "dropout",
    gradcheck_attention => "attention",
    gradcheck_cross_entropy => "cross_entropy",
    gradcheck_composite => "composite",
}
