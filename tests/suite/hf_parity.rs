//! Parity with Hugging Face transformers and PEFT, against fixtures written by
//! `tools/hf_fixtures.py` (see its docstring for what each file holds).
//!
//! - A tiny random GPT2LMHeadModel: logits and loss within 1e-4, every parameter gradient within
//!   1e-3 relative (max |difference| / max |reference| per tensor).
//! - A tiny random BertForPreTraining: last hidden states, pooler output, masked-LM logits.
//! - PEFT LoRA adapters on both (GPT-2 causal LM; BERT sequence classification with the
//!   classifier in `modules_to_save`), loaded through `--adapter`'s path.
//! - all-MiniLM-L6-v2: token ids exactly, mean-pooled normalised embeddings to cosine > 0.99999
//!   and max |difference| < 1e-4. The model is not in the repository: the test looks for it in
//!   `$TUNELAB_MINILM`, else `target/hf/all-minilm-l6-v2` (where `.ci/run` puts it), and skips
//!   with a message when it is absent, unless `TUNELAB_REQUIRE_MINILM=1`.
//!
//! Every comparison prints its max difference (`cargo test --test suite hf_parity:: -- --nocapture`).

use crate::common::temp_dir;
use approx::{abs_diff_eq, assert_abs_diff_eq};
use ndarray::{Array2, ArrayD, Ix2};
use std::path::{Path, PathBuf};
use tunelab::autodiff::IGNORE_INDEX;
use tunelab::io::{checkpoint, hf, safetensors};
use tunelab::lab::embed::{self, EmbedPooling};
use tunelab::nn::{Input, NoHooks, Pooling, SequenceHead};
use tunelab::peft::store::load_adapter;
use tunelab::{Grads, Tape};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// The reference tensors of a fixture file, by name.
struct Ref(Vec<(String, ArrayD<f32>)>);

impl Ref {
    fn load(name: &str) -> Ref {
        Ref(safetensors::load::<f32>(&fixture(name)).unwrap().tensors)
    }
    fn get(&self, name: &str) -> &ArrayD<f32> {
        &self
            .0
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in the fixture"))
            .1
    }
    /// A (B, T) integer tensor stored as F32.
    fn ids(&self, name: &str) -> Array2<usize> {
        self.get(name)
            .view()
            .into_dimensionality::<Ix2>()
            .unwrap()
            .mapv(|x| x as usize)
    }
}

/// Whether `a` and `b` agree to `tol` (approx's absolute difference), after checking the shapes
/// agree; prints the verdict and max |a - b| as llm.c's `test_gpt2` does.
fn agrees(what: &str, a: ndarray::ArrayViewD<f32>, b: ndarray::ArrayViewD<f32>, tol: f32) -> bool {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let same = abs_diff_eq!(a, b, epsilon = tol);
    let d = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let verdict = if same { "OK    " } else { "NOT OK" };
    println!("{verdict} {what}: max |diff| {d:.3e}");
    same
}

#[test]
fn gpt2_logits_loss_and_every_gradient_match_transformers() {
    let r = Ref::load("gpt2-tiny-ref.safetensors");
    let m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    assert_eq!(m.architecture, "GPT2LMHeadModel");
    assert!(m.initialised.is_empty(), "{:?}", m.initialised);
    let ids = r.ids("input_ids");
    let (b, t) = ids.dim();

    let mut tape = Tape::new(&m.store);
    let hidden = m
        .model
        .forward(&mut tape, &NoHooks, &Input::new(ids.view()))
        .unwrap();
    let logits = m.model.lm_logits(&mut tape, &NoHooks, hidden).unwrap();
    // Labels = input ids shifted left, as GPT2LMHeadModel(labels=input_ids) computes its loss.
    let targets: Vec<i64> = (0..b)
        .flat_map(|i| (0..t).map(move |j| (i, j)))
        .map(|(i, j)| {
            if j + 1 < t {
                ids[[i, j + 1]] as i64
            } else {
                IGNORE_INDEX
            }
        })
        .collect();
    let loss = tape.cross_entropy(logits, &targets, IGNORE_INDEX).unwrap();

    assert!(agrees(
        "logits",
        tape.value(logits),
        r.get("logits").view(),
        1e-4
    ));
    let l = tape.scalar(loss).unwrap();
    let l_ref = r.get("loss").iter().next().copied().unwrap();
    println!("loss: tunelab {l:.6}, transformers {l_ref:.6}");
    assert_abs_diff_eq!(l, l_ref, epsilon = 1e-4);

    let mut grads = Grads::new(&m.store);
    tape.backward(loss, &mut grads).unwrap();
    let mut checked = 0;
    for (id, p) in m.store.iter() {
        let g = grads
            .get(id)
            .unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let g_ref = r.get(&format!("grad.{}", p.name));
        // Relative to the tensor's largest reference value.
        let scale = g_ref.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        assert!(scale > 0.0, "{}: the reference gradient is zero", p.name);
        assert!(
            agrees(
                &format!("grad {}", p.name),
                g.view(),
                g_ref.view(),
                1e-3 * scale
            ),
            "{}: differs by more than 1e-3 of its largest value {scale:.3e}",
            p.name
        );
        checked += 1;
    }
    assert_eq!(checked, m.store.len());
    assert_eq!(
        checked,
        4 + 12 * 2,
        "wte, wpe, ln_f (2) and 12 tensors per block"
    );
}

#[test]
fn gpt2_files_without_the_model_prefix_load_the_same() {
    let m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    // tunelab's own save writes the names without `transformer.`.
    let dir = temp_dir("noprefix");
    checkpoint::save(&dir, &m.model.config, &m.store).unwrap();
    let again = hf::load::<f32>(&dir).unwrap();
    for (id, p) in m.store.iter() {
        assert_eq!(again.store.value(id), &p.value, "{}", p.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bert_hidden_states_pooler_and_mlm_logits_match_transformers() {
    let r = Ref::load("bert-tiny-ref.safetensors");
    let m = hf::load::<f32>(&fixture("bert-tiny")).unwrap();
    assert_eq!(m.architecture, "BertForPreTraining");
    assert!(m.initialised.is_empty(), "{:?}", m.initialised);
    assert!(
        m.ignored.iter().any(|n| n == "cls.seq_relationship.weight"),
        "{:?}",
        m.ignored
    );
    let ids = r.ids("input_ids");
    let mask = r.ids("attention_mask").mapv(|x| x == 1);
    let types = r.ids("token_type_ids");
    let mut input = Input::new(ids.view()).with_mask(mask.view());
    input.token_types = Some(types.view());

    let mut tape = Tape::inference(&m.store);
    let hidden = m.model.forward(&mut tape, &NoHooks, &input).unwrap();
    // Pad positions compute garbage in both (attention ignores them as keys only): compare the
    // real positions.
    let real = |x: ndarray::ArrayViewD<f32>| {
        let mut x = x.to_owned();
        for ((i, j), &m) in mask.indexed_iter() {
            if !m {
                x.index_axis_mut(ndarray::Axis(0), i)
                    .index_axis_mut(ndarray::Axis(0), j)
                    .fill(0.0);
            }
        }
        x
    };
    assert!(agrees(
        "hidden",
        real(tape.value(hidden)).view(),
        real(r.get("hidden").view()).view(),
        1e-4
    ));
    let pooled = tunelab::nn::heads::pool(
        &mut tape,
        &NoHooks,
        &m.model,
        Pooling::Cls,
        hidden,
        Some(mask.view()),
    )
    .unwrap();
    assert!(agrees(
        "pooled",
        tape.value(pooled),
        r.get("pooled").view(),
        1e-4
    ));
    let logits = m.model.lm_logits(&mut tape, &NoHooks, hidden).unwrap();
    assert!(agrees(
        "mlm logits",
        real(tape.value(logits)).view(),
        real(r.get("mlm_logits").view()).view(),
        1e-4
    ));
}

#[test]
fn peft_gpt2_lora_adapter_gives_peft_logits() {
    let r = Ref::load("gpt2-tiny-lora-ref.safetensors");
    let mut m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    let (spec, method, meta) =
        load_adapter(&fixture("gpt2-tiny-lora"), &m.model, &mut m.store, 0).unwrap();
    let tunelab::peft::MethodSpec::Lora(c) = spec else {
        panic!("a PEFT LoRA adapter loads as LoRA")
    };
    assert_eq!((c.r, c.alpha), (4, 8.0));
    assert_eq!(c.targets, ["qkv", "o", "fc", "proj"]);
    assert_eq!(meta["peft"]["task_type"], "CAUSAL_LM");
    let ids = r.ids("input_ids");
    let mut tape = Tape::inference(&m.store);
    let h = m
        .model
        .forward(&mut tape, method.as_ref(), &Input::new(ids.view()))
        .unwrap();
    let logits = m.model.lm_logits(&mut tape, method.as_ref(), h).unwrap();
    assert!(agrees(
        "lora logits",
        tape.value(logits),
        r.get("logits").view(),
        1e-4
    ));
}

/// Classification logits of the tiny BERT with a LoRA adapter (and its classifier) loaded.
fn bert_lora_logits(adapter: &Path, r: &Ref) -> ArrayD<f32> {
    let mut m = hf::load::<f32>(&fixture("bert-tiny")).unwrap();
    let head = SequenceHead::new(&mut m.store, &m.model, 3, Pooling::Cls, 0).unwrap();
    let (_, method, _) = load_adapter(adapter, &m.model, &mut m.store, 0).unwrap();
    let ids = r.ids("input_ids");
    let mask = r.ids("attention_mask").mapv(|x| x == 1);
    let types = r.ids("token_type_ids");
    let mut input = Input::new(ids.view()).with_mask(mask.view());
    input.token_types = Some(types.view());
    let mut tape = Tape::inference(&m.store);
    let h = m.model.forward(&mut tape, method.as_ref(), &input).unwrap();
    let logits = head
        .forward(&mut tape, method.as_ref(), &m.model, h, Some(mask.view()))
        .unwrap();
    tape.value(logits).to_owned()
}

#[test]
fn peft_bert_classification_adapter_gives_peft_logits() {
    let r = Ref::load("bert-tiny-lora-ref.safetensors");
    let logits = bert_lora_logits(&fixture("bert-tiny-lora"), &r);
    assert!(agrees(
        "classifier logits",
        logits.view(),
        r.get("logits").view(),
        1e-4
    ));
}

#[test]
fn export_peft_then_import_gives_the_same_adapter_and_outputs() {
    let r = Ref::load("bert-tiny-lora-ref.safetensors");
    // PEFT → tunelab (load, save in tunelab's format) → PEFT (export) → tunelab (load).
    let mut m = hf::load::<f32>(&fixture("bert-tiny")).unwrap();
    let head = SequenceHead::new(&mut m.store, &m.model, 3, Pooling::Cls, 0).unwrap();
    let (spec, mut method, _) =
        load_adapter(&fixture("bert-tiny-lora"), &m.model, &mut m.store, 0).unwrap();
    let own = temp_dir("own");
    let head_ids = [head.out.weight, head.out.bias.unwrap()];
    let meta = serde_json::json!({ "task": "sentiment", "base": "bert-tiny" });
    tunelab::peft::store::save_adapter(&own, &spec, method.as_mut(), &mut m.store, &head_ids, meta)
        .unwrap();
    let exported = temp_dir("exported");
    tunelab::io::adapter::export_peft(&own, &m.model.config, "bert-tiny", &exported).unwrap();

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 16.0);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["query", "value"])
    );
    assert_eq!(config["modules_to_save"], serde_json::json!(["classifier"]));
    assert_eq!(config["base_model_name_or_path"], "bert-tiny");
    // The same keys and values as the file PEFT wrote.
    let mut theirs = safetensors::load::<f32>(&fixture("bert-tiny-lora/adapter_model.safetensors"))
        .unwrap()
        .tensors;
    let mut ours = safetensors::load::<f32>(&exported.join("adapter_model.safetensors"))
        .unwrap()
        .tensors;
    theirs.sort_by(|a, b| a.0.cmp(&b.0));
    ours.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ours.iter().map(|t| &t.0).collect::<Vec<_>>(),
        theirs.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "{name}");
    }
    let logits = bert_lora_logits(&exported, &r);
    assert!(agrees(
        "round-trip logits",
        logits.view(),
        r.get("logits").view(),
        1e-4
    ));
    std::fs::remove_dir_all(&own).unwrap();
    std::fs::remove_dir_all(&exported).unwrap();
}

#[test]
fn gpt2_export_names_match_peft_and_partial_c_attn_is_refused() {
    // The PEFT fixture's GPT-2 adapter through tunelab's format and back: the keys PEFT wrote.
    let mut m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    let (spec, mut method, _) =
        load_adapter(&fixture("gpt2-tiny-lora"), &m.model, &mut m.store, 0).unwrap();
    let own = temp_dir("gpt-own");
    let meta = serde_json::json!({ "task": "dialogue", "base": "gpt2-tiny" });
    tunelab::peft::store::save_adapter(&own, &spec, method.as_mut(), &mut m.store, &[], meta)
        .unwrap();
    let exported = temp_dir("gpt-exported");
    tunelab::io::adapter::export_peft(&own, &m.model.config, "gpt2-tiny", &exported).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["fan_in_fan_out"], true);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["c_attn", "c_proj", "c_fc"])
    );
    let names = |p: &Path| {
        let mut n: Vec<String> = safetensors::load::<f32>(p)
            .unwrap()
            .tensors
            .into_iter()
            .map(|t| t.0)
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&exported.join("adapter_model.safetensors")),
        names(&fixture("gpt2-tiny-lora/adapter_model.safetensors"))
    );

    // LoRA on q and v alone splits GPT-2's fused c_attn, which PEFT cannot express.
    let mut m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    let spec = tunelab::peft::MethodSpec::Lora(Default::default());
    let mut method = tunelab::peft::apply(&spec, &m.model, &mut m.store, 0).unwrap();
    let qv = temp_dir("gpt-qv");
    tunelab::peft::store::save_adapter(
        &qv,
        &spec,
        method.as_mut(),
        &mut m.store,
        &[],
        serde_json::Value::Null,
    )
    .unwrap();
    let err = tunelab::io::adapter::export_peft(&qv, &m.model.config, "gpt2-tiny", &temp_dir("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("c_attn") && err.contains("qkv"), "{err}");
    for d in [own, exported, qv] {
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn unknown_architecture_missing_and_misshaped_tensors_are_named() {
    let src = fixture("gpt2-tiny");
    let dir = temp_dir("errors");
    std::fs::create_dir_all(&dir).unwrap();
    let config_text = std::fs::read_to_string(src.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config_text).unwrap();
    let weights = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();

    config["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = hf::load::<f32>(&dir).err().unwrap().to_string();
    assert!(
        err.contains("LlamaForCausalLM") && err.contains("config.json"),
        "{err}"
    );

    // One layer more than the file has: the first tensor of that layer is named.
    config["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    config["n_layer"] = serde_json::json!(3);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = hf::load::<f32>(&dir).err().unwrap().to_string();
    assert!(
        err.contains("h.2.ln_1.weight") && err.contains("missing"),
        "{err}"
    );

    // A wider model than the file: the first mis-shaped tensor is named with both shapes.
    config["n_layer"] = serde_json::json!(2);
    config["n_embd"] = serde_json::json!(64);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = hf::load::<f32>(&dir).err().unwrap().to_string();
    assert!(
        err.contains("transformer.") && err.contains("shape"),
        "{err}"
    );

    config["n_embd"] = serde_json::json!(48);
    config["scale_attn_by_inverse_layer_idx"] = serde_json::json!(true);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = hf::load::<f32>(&dir).err().unwrap().to_string();
    assert!(err.contains("scale_attn_by_inverse_layer_idx"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bert_checkpoint_without_its_heads_loads_and_says_so() {
    // BertModel files have no MLM head; BertForMaskedLM files no pooler.
    let m = hf::load::<f32>(&fixture("bert-tiny")).unwrap();
    let dir = temp_dir("bare-bert");
    let kept: Vec<(&str, ndarray::ArrayViewD<f32>)> = m
        .store
        .iter()
        .filter(|(_, p)| !p.name.starts_with("cls."))
        .map(|(_, p)| (p.name.as_str(), p.value.view()))
        .collect();
    std::fs::create_dir_all(&dir).unwrap();
    safetensors::save(&dir.join("model.safetensors"), &kept, &[]).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("bert-tiny/config.json")).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["BertModel"]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bare = hf::load::<f32>(&dir).unwrap();
    assert!(bare
        .initialised
        .iter()
        .all(|n| n.starts_with("cls.predictions.")));
    assert_eq!(bare.initialised.len(), 5, "{:?}", bare.initialised);
    let note = bare.notes().unwrap();
    assert!(note.contains("cls.predictions.*"), "{note}");
    // Everything the encoder uses is the checkpoint's.
    for (id, p) in m.store.iter().filter(|(_, p)| !p.name.starts_with("cls.")) {
        assert_eq!(bare.store.value(id), &p.value, "{}", p.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The MiniLM model directory, if present (and a failure if required but absent).
fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TUNELAB_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hf/all-minilm-l6-v2")
        });
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var("TUNELAB_REQUIRE_MINILM").is_ok_and(|v| v == "1") {
        panic!(
            "TUNELAB_REQUIRE_MINILM=1 but there is no MiniLM model at {}",
            dir.display()
        );
    }
    println!(
        "SKIPPED: no all-MiniLM-L6-v2 at {} (set TUNELAB_MINILM; .ci/run fetches it)",
        dir.display()
    );
    None
}

#[test]
fn minilm_ids_and_embeddings_match_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let fx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("minilm.json")).unwrap()).unwrap();
    let sentences: Vec<String> = serde_json::from_value(fx["sentences"].clone()).unwrap();
    let ids_ref: Vec<Vec<usize>> = serde_json::from_value(fx["ids"].clone()).unwrap();
    let emb_ref: Vec<Vec<f32>> = serde_json::from_value(fx["embeddings"].clone()).unwrap();

    let m = hf::load::<f32>(&dir).unwrap();
    assert_eq!(m.architecture, "BertModel");
    // tokenizer.json, and a WordPiece tokenizer built from vocab.txt alone: the same ids.
    let tok = hf::load_tokenizer(&dir).unwrap();
    let from_vocab =
        tunelab::data::tokenizer::Tokenizer::from_vocab_txt(dir.join("vocab.txt"), true).unwrap();
    let ids = embed::encode_texts(&tok, &sentences).unwrap();
    assert_eq!(ids, ids_ref, "tokenizer.json ids");
    assert_eq!(
        embed::encode_texts(&from_vocab, &sentences).unwrap(),
        ids_ref,
        "vocab.txt ids"
    );

    let emb = embed::embed(
        &m.model,
        &m.store,
        &NoHooks,
        &tok,
        &sentences,
        EmbedPooling::Mean,
        true,
    )
    .unwrap();
    let (mut worst_cos, mut worst_diff) = (1.0f64, 0.0f32);
    for (a, b) in emb.iter().zip(&emb_ref) {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        worst_cos = worst_cos.min(dot / (na * nb));
        worst_diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(worst_diff, f32::max);
    }
    println!(
        "MiniLM: {} sentences, min cosine {worst_cos:.9}, max |diff| {worst_diff:.3e}",
        emb.len()
    );
    assert_eq!(emb.len(), sentences.len());
    assert!(worst_cos > 0.99999);
    assert!(worst_diff < 1e-4);
}
