use super::rng;
use crate::early_stopping::EarlyStopping;
use rand::Rng;
use tunelab::train::trainer::TrainerState;

#[test]
fn matches_the_trainer() {
    let mut rng = rng(1);
    for metric in ["loss", "accuracy"] {
        for patience in 1..4 {
            for _ in 0..10 {
                // Values on a coarse grid, so ties (which are not improvements) happen.
                let values: Vec<f64> = (0..25)
                    .map(|_| f64::from(rng.random_range(0..8u8)) / 4.0)
                    .collect();
                let mut trainer = TrainerState::default();
                let mut mine = EarlyStopping::new(patience, metric == "loss");
                for (i, &v) in values.iter().enumerate() {
                    trainer.record_eval(metric, v);
                    let stop = mine.update(v);
                    let what = format!(
                        "{metric}, patience {patience}, evaluations {:?}",
                        &values[..=i]
                    );
                    assert_eq!(mine.best, trainer.best_metric, "best so far: {what}");
                    assert_eq!(stop, trainer.should_stop_early(patience), "stop: {what}");
                }
            }
        }
    }
}
