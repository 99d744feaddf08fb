//! Checkpoints: round trip, and clear errors naming the tensor for mismatched or missing weights.

use crate::common::temp_dir;
use tunelab::io::checkpoint;
use tunelab::nn::{Config, Transformer};
use tunelab::ParamStore;

#[test]
fn checkpoint_round_trip_is_exact() {
    for config in [Config::gpt(31, 8, 2, 2, 12), Config::bert(31, 8, 2, 1, 12)] {
        let mut store = ParamStore::<f32>::new();
        Transformer::new(config.clone(), &mut store, 3).unwrap();
        let dir = temp_dir("roundtrip");
        checkpoint::save(&dir, &config, &store).unwrap();
        let (model, loaded) = checkpoint::load::<f32>(&dir).unwrap();
        assert_eq!(model.config, config);
        assert_eq!(loaded.len(), store.len());
        for (id, p) in store.iter() {
            assert_eq!(loaded.value(id), &p.value, "{}", p.name);
            assert_eq!(loaded.name(id), p.name);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn checkpoint_errors_name_the_tensor() {
    let config = Config::gpt(31, 8, 2, 2, 12);
    let mut store = ParamStore::<f32>::new();
    Transformer::new(config.clone(), &mut store, 3).unwrap();
    let dir = temp_dir("mismatch");
    checkpoint::save(&dir, &config, &store).unwrap();

    // A config that disagrees with the weights: the first mismatched tensor is named.
    let mut wider = config.clone();
    wider.vocab_size = 40;
    std::fs::write(dir.join("config.json"), wider.to_json().to_string()).unwrap();
    let err = checkpoint::load::<f32>(&dir).unwrap_err().to_string();
    assert!(
        err.contains("wte.weight") && err.contains("(31, 8)") && err.contains("(40, 8)"),
        "{err}"
    );

    // More layers than the file holds: the first missing tensor is named.
    let mut deeper = config.clone();
    deeper.n_layers = 3;
    std::fs::write(dir.join("config.json"), deeper.to_json().to_string()).unwrap();
    let err = checkpoint::load::<f32>(&dir).unwrap_err().to_string();
    assert!(err.contains("h.2.") && err.contains("missing"), "{err}");

    // A truncated weights file and a broken config are errors naming the file, not panics.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config.to_json().to_string()).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load::<f32>(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(
        dir.join("config.json"),
        "{\"model_type\": \"gpt2\", \"n_embd\": \"wide\"}",
    )
    .unwrap();
    let err = checkpoint::load::<f32>(&dir).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("n_embd"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let err = checkpoint::load::<f32>(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
}
