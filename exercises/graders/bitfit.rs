use super::{rng, tiny_bert, tiny_gpt};
use crate::bitfit::{freeze_for_bitfit, Param};
use rand::Rng;
use tunelab::peft::bitfit::BitFit;

#[test]
fn matches_tunelab_on_gpt_and_bert() {
    let mut rng = rng(1);
    for (arch, (_, mut store)) in [("GPT", tiny_gpt(2)), ("BERT", tiny_bert())] {
        // Start from arbitrary flags: every one must be set, not just the biases.
        let ids: Vec<_> = store.ids().collect();
        for &id in &ids {
            store.set_trainable(id, rng.random_bool(0.5));
        }
        let mut params: Vec<Param> = ids
            .iter()
            .map(|&id| Param {
                name: store.name(id).to_string(),
                trainable: store.is_trainable(id),
            })
            .collect();
        BitFit::apply(&mut store);
        freeze_for_bitfit(&mut params);
        let wrong: Vec<String> = ids
            .iter()
            .zip(&params)
            .filter(|(&id, p)| p.trainable != store.is_trainable(id))
            .map(|(&id, p)| format!("{} (should be {})", p.name, store.is_trainable(id)))
            .collect();
        assert!(
            wrong.is_empty(),
            "{arch}: wrong trainable flag on {wrong:?}"
        );
    }
}
