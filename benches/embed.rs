//! Sentence embeddings with all-MiniLM-L6-v2 (BERT, 6 layers, C = 384): 64 short sentences
//! (about 14 tokens each with [CLS] and [SEP]) in one batch, mean-pooled and normalised, as
//! `tunelab embed` computes them. Throughput is in sentences.
//!
//! The model is not in the repository: the benchmark reads `$TUNELAB_MINILM`, else
//! `target/hf/all-minilm-l6-v2` (`.ci/run` shows how to fetch it), and skips when it is absent.
//! `tools/embed_speed.py` times PyTorch on the same sentences.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tunelab::io::hf;
use tunelab::lab::embed::{self, EmbedPooling};
use tunelab::nn::NoHooks;

/// 64 sentences of 12 word pieces each (14 tokens with [CLS] and [SEP]); the same list is in
/// tools/embed_speed.py.
fn sentences() -> Vec<String> {
    let subjects = ["The cat", "A young man", "My neighbour", "The old teacher"];
    let verbs = [
        "quietly reads",
        "slowly paints",
        "happily cooks",
        "carefully fixes",
    ];
    let objects = [
        "a long letter for her friend",
        "the red door near the garden",
        "a simple meal before dinner",
        "the broken chair in the kitchen",
    ];
    let mut out = Vec::new();
    for s in subjects {
        for v in verbs {
            for o in objects {
                out.push(format!("{s} {v} {o}."));
            }
        }
    }
    out
}

fn minilm() -> Option<PathBuf> {
    let dir = std::env::var_os("TUNELAB_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hf/all-minilm-l6-v2")
        });
    dir.join("model.safetensors").exists().then_some(dir)
}

fn bench(c: &mut Criterion) {
    let Some(dir) = minilm() else {
        eprintln!("embed benchmark skipped: no all-MiniLM-L6-v2 (set TUNELAB_MINILM)");
        return;
    };
    let m = hf::load::<f32>(&dir).expect("MiniLM loads");
    let tok = hf::load_tokenizer(&dir).expect("MiniLM tokenizer loads");
    let texts = sentences();
    let ids = embed::encode_texts(&tok, &texts).expect("sentences encode");
    let tokens: usize = ids.iter().map(Vec::len).sum();
    eprintln!(
        "{} sentences, {tokens} tokens ({:.1} per sentence, longest {})",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        ids.iter().map(Vec::len).max().unwrap_or(0)
    );
    let mut g = c.benchmark_group("embed_minilm");
    g.throughput(Throughput::Elements(texts.len() as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("64_sentences_tokenize_and_embed", |b| {
        b.iter(|| {
            embed::embed(
                &m.model,
                &m.store,
                &NoHooks,
                &tok,
                &texts,
                EmbedPooling::Mean,
                true,
            )
            .expect("embedding works")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
