use crate::warmup_cosine::warmup_cosine;
use approx::abs_diff_eq;
use tunelab::optim::Schedule;

#[test]
fn matches_tunelab() {
    for (warmup, total) in [(10, 110), (0, 10), (7, 50), (3, 3), (5, 3), (1, 1), (0, 0)] {
        let schedule = Schedule::Cosine {
            warmup_steps: warmup,
            total_steps: total,
        };
        for step in 0..total + 20 {
            let (got, want) = (warmup_cosine(step, warmup, total), schedule.factor(step));
            assert!(
                abs_diff_eq!(got, want, epsilon = 1e-12),
                "warmup {warmup}, total {total}, step {step}: {got}, tunelab {want}"
            );
        }
    }
}
