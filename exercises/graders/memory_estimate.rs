use crate::memory_estimate::{full_ft_state_bytes, lora_state_bytes};
use approx::abs_diff_eq;
use tunelab::lab::estimate::{estimate, EstimateArgs, Method, NAMED_SIZES};

#[test]
fn matches_tunelab_estimate() {
    for size in NAMED_SIZES {
        let report = estimate(&EstimateArgs::new(size)).unwrap();
        let n = report.params.total;
        let full = report.row(Method::FullFp32).unwrap().states_bytes();
        let got = full_ft_state_bytes(n);
        assert!(
            abs_diff_eq!(got, full, epsilon = 1e-9 * full),
            "{size} full FT: {got:.4e} B, tunelab {full:.4e} B"
        );
        let lora = report.row(Method::Lora).unwrap();
        let got = lora_state_bytes(n, lora.trainable);
        let want = lora.states_bytes();
        assert!(
            abs_diff_eq!(got, want, epsilon = 1e-9 * want),
            "{size} {}: {got:.4e} B, tunelab {want:.4e} B",
            lora.label
        );
    }
}
