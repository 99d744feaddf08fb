//! The shipped base models load and reach the validation loss recorded in models/README.md.

use std::path::Path;
use tunelab::data::tokenizer::Tokenizer;
use tunelab::io::checkpoint;
use tunelab::train::pretrain::{validation_batches, validation_loss, Base};

/// The validation loss column of `name`'s row in models/README.md.
fn recorded_loss(readme: &str, name: &str) -> f64 {
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row for {name} in models/README.md"));
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    cols[4]
        .parse()
        .unwrap_or_else(|_| panic!("validation loss column of {name}: {:?}", cols[4]))
}

#[test]
fn shipped_models_reach_their_recorded_validation_loss() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for base in [Base::GptTiny, Base::BertTiny] {
        let dir = root.join(base.name());
        let (model, store) = checkpoint::load::<f32>(&dir).unwrap();
        let tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        assert_eq!(model.config.causal, base == Base::GptTiny);
        let batches = validation_batches(base, &tok, model.config.max_len).unwrap();
        let loss = validation_loss(&model, &store, &batches).unwrap();
        let want = recorded_loss(&readme, base.name());
        let rel = (loss - want).abs() / want;
        assert!(
            rel < 0.02,
            "{}: validation loss {loss:.4}, README records {want:.4} ({:.2}% off)",
            base.name(),
            rel * 100.0
        );
        // Far better than chance: a uniform guess over the vocabulary has loss ln V.
        assert!(
            loss < 0.6 * (tok.vocab_size() as f64).ln(),
            "{}: loss {loss} is near chance",
            base.name()
        );
    }
}
