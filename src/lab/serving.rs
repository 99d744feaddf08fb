//! Serving many LoRA adapters: one base plus N adapters switched per request, against N merged
//! copies of the model.
//!
//! - **(a) one base + N adapters** ([`AdapterSet`]): the base weights are held once and each
//!   adapter adds its A and B (r·(d_in + d_out) numbers per targeted Linear). A request for
//!   adapter k activates it (a pointer swap per base tensor, nothing copied) and runs the model
//!   with LoRA's hooks, which add s·x Aᵀ Bᵀ to every targeted Linear's output.
//! - **(b) N merged copies**: each adapter folded into its own copy of the base
//!   (W + s·B A, [`crate::peft::Method::merge_into_base`]): N times the base's memory, no
//!   switching and no extra work per request.
//!
//! Memory is counted exactly (bytes of every tensor held); throughput is measured: a fixed batch
//! of requests, each a token sequence for a randomly chosen adapter, run one after another, and
//! the requests per second of each path. Both paths give the same logits per request up to the
//! rounding of the fold (W + s·B A is rounded to f32 once, the hook rounds x W and s·x Aᵀ Bᵀ
//! separately), which [`serve`] measures and reports as `max_diff`. The adapters are random, not
//! trained (B ≠ 0 so they change the outputs): memory and speed do not depend on what they learnt.

use super::finetune::{load_base, Base};
use crate::autodiff::ParamStore;
use crate::error::{Error, Result};
use crate::nn::{Hooks, Input, NoHooks, Transformer};
use crate::peft::spec::{LoraConfig, MethodSpec};
use crate::peft::store::AdapterSet;
use crate::Tape;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ServingOptions {
    pub base: String,
    /// The numbers of adapters, one row each.
    pub counts: Vec<usize>,
    /// Requests per row (each for a random adapter).
    pub requests: usize,
    /// Tokens per request.
    pub tokens: usize,
    /// The adapters' LoRA configuration.
    pub lora: LoraConfig,
    pub seed: u64,
}

impl Default for ServingOptions {
    /// gpt-tiny, N = 1, 4, 16, 64 requests of 32 tokens, LoRA r = 8 on q and v.
    fn default() -> Self {
        Self {
            base: super::runs::BASE.into(),
            counts: vec![1, 4, 16],
            requests: 64,
            tokens: 32,
            lora: crate::peft::lora::compare_config(),
            seed: 0,
        }
    }
}

/// One row: N adapters served both ways.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServingRow {
    pub adapters: usize,
    /// (a): base + adapters, bytes of every tensor held.
    pub set_bytes: usize,
    /// (b): N merged models.
    pub merged_bytes: usize,
    pub base_bytes: usize,
    /// Bytes of one adapter's tensors.
    pub adapter_bytes: usize,
    pub set_requests_per_s: f64,
    pub merged_requests_per_s: f64,
    /// Requests whose adapter differed from the previous request's (switches in (a)).
    pub switches: usize,
    /// The largest |logit (a) − logit (b)| over all requests.
    pub max_diff: f64,
}

/// A random LoRA adapter (A as LoRA initialises it, B random so that it changes the outputs)
/// written to `dir`.
fn random_adapter(
    base: &mut Base,
    lora: &LoraConfig,
    seed: u64,
    dir: &std::path::Path,
) -> Result<()> {
    let mut store = base.store.clone();
    let spec = MethodSpec::Lora(lora.clone());
    let mut method = crate::peft::apply(&spec, &base.model, &mut store, seed)?;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    for &id in method.params() {
        let v = store.value(id).mapv(|x| {
            if x == 0.0 {
                rng.random_range(-0.05f32..0.05)
            } else {
                x
            }
        });
        store.set_value(id, v)?;
    }
    let meta = serde_json::json!({
        "base_config": crate::io::adapter::base_record(&base.model.config)
    });
    crate::peft::store::save_adapter(dir, &spec, method.as_mut(), &mut store, &[], meta)
}

/// The last position's vocabulary logits for one request.
fn last_logits(
    model: &Transformer,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    ids: &Array2<usize>,
) -> Result<Vec<f32>> {
    let mut tape = Tape::inference(store);
    let h = model.forward(&mut tape, hooks, &Input::new(ids.view()))?;
    let logits = model.lm_logits(&mut tape, hooks, h)?;
    let v = tape.value(logits);
    let t = ids.ncols();
    Ok(v.slice(ndarray::s![0, t - 1, ..]).to_vec())
}

/// The adapter directories of one run (removed when dropped).
struct TempDirs(Vec<PathBuf>);

impl Drop for TempDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Measures every row of `opts.counts`.
pub fn serve(opts: &ServingOptions, progress: &mut dyn FnMut(&str)) -> Result<Vec<ServingRow>> {
    if opts.counts.is_empty() || opts.counts.contains(&0) || opts.requests == 0 || opts.tokens == 0
    {
        return Err(Error::Invalid {
            op: "serving",
            detail: "adapter counts, requests and tokens must all be at least 1".into(),
        });
    }
    let mut base = load_base(&opts.base)?;
    if !base.model.config.causal {
        return Err(Error::Invalid {
            op: "serving",
            detail: format!(
                "{} is not a decoder: serving measures next-token logits",
                opts.base
            ),
        });
    }
    if opts.tokens > base.model.config.max_len {
        return Err(Error::Invalid {
            op: "--tokens",
            detail: format!(
                "{} tokens per request, the model takes at most {}",
                opts.tokens, base.model.config.max_len
            ),
        });
    }
    let most = *opts.counts.iter().max().expect("counts");
    let dirs = TempDirs(
        (0..most)
            .map(|k| super::runs::temp_dir(&format!("serve-{k}")))
            .collect(),
    );
    for (k, d) in dirs.0.iter().enumerate() {
        random_adapter(&mut base, &opts.lora, opts.seed + k as u64, d)?;
    }
    let vocab = base.model.config.vocab_size;
    let mut rows = Vec::new();
    for &n in &opts.counts {
        progress(&format!("{n} adapters: loading both ways"));
        let mut rng = StdRng::seed_from_u64(opts.seed ^ n as u64);
        let requests: Vec<(usize, Array2<usize>)> = (0..opts.requests)
            .map(|_| {
                let k = rng.random_range(0..n);
                let ids = Array2::from_shape_fn((1, opts.tokens), |_| rng.random_range(0..vocab));
                (k, ids)
            })
            .collect();
        let switches = requests.windows(2).filter(|w| w[0].0 != w[1].0).count() + 1;
        // (a) one base, n adapters.
        let mut set = AdapterSet::new(base.model.clone(), base.store.clone());
        let names: Vec<String> = (0..n).map(|k| format!("adapter-{k}")).collect();
        for (name, dir) in names.iter().zip(&dirs.0) {
            set.load(name, dir, 0)?;
        }
        let set_bytes = set.bytes();
        let adapter_bytes = (set_bytes - base.store.bytes()) / n;
        // (b) n merged copies.
        let mut merged: Vec<ParamStore<f32>> = Vec::with_capacity(n);
        for dir in dirs.0.iter().take(n) {
            let mut store = base.store.clone();
            let n_base = store.len();
            let (_, method, _) = crate::peft::store::load_adapter(dir, &base.model, &mut store, 0)?;
            method.merge_into_base(&mut store)?;
            // Keep the base tensors only: the merged model is a plain model.
            let mut plain = ParamStore::new();
            for (_, p) in store.iter().take(n_base) {
                plain.add(p.name.clone(), p.value.clone(), false)?;
            }
            merged.push(plain);
        }
        let merged_bytes: usize = merged.iter().map(ParamStore::bytes).sum();

        progress(&format!(
            "{n} adapters: {} requests through the adapter set",
            requests.len()
        ));
        let t0 = Instant::now();
        let mut outs_a = Vec::with_capacity(requests.len());
        for (k, ids) in &requests {
            set.activate(&names[*k])?;
            outs_a.push(last_logits(set.model(), set.store(), set.hooks(), ids)?);
        }
        let set_s = t0.elapsed().as_secs_f64();
        progress(&format!(
            "{n} adapters: {} requests through the merged copies",
            requests.len()
        ));
        let t0 = Instant::now();
        let mut outs_b = Vec::with_capacity(requests.len());
        for (k, ids) in &requests {
            outs_b.push(last_logits(&base.model, &merged[*k], &NoHooks, ids)?);
        }
        let merged_s = t0.elapsed().as_secs_f64();
        let max_diff = outs_a
            .iter()
            .zip(&outs_b)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64))
            .fold(0.0, f64::max);
        rows.push(ServingRow {
            adapters: n,
            set_bytes,
            merged_bytes,
            base_bytes: base.store.bytes(),
            adapter_bytes,
            set_requests_per_s: requests.len() as f64 / set_s,
            merged_requests_per_s: requests.len() as f64 / merged_s,
            switches,
            max_diff,
        });
    }
    Ok(rows)
}

fn mb(bytes: usize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// The rows as a table, with what was measured and how.
pub fn table(opts: &ServingOptions, rows: &[ServingRow]) -> String {
    let mut out = format!(
        "serving LoRA adapters (r={}, alpha={}, targets {}) on {}: {} requests of {} tokens each, each for a random adapter, one at a time\n",
        opts.lora.r,
        opts.lora.alpha,
        opts.lora.targets.join(","),
        opts.base,
        opts.requests,
        opts.tokens
    );
    out.push_str(&format!(
        "{:>8}  {:>14}  {:>14}  {:>10}  {:>12}  {:>12}  {:>8}  {:>10}\n",
        "adapters",
        "memory: set",
        "memory: merged",
        "switches",
        "set req/s",
        "merged req/s",
        "ratio",
        "max |diff|"
    ));
    out.push_str(&"-".repeat(104));
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{:>8}  {:>14}  {:>14}  {:>10}  {:>12.1}  {:>12.1}  {:>8.2}  {:>10.1e}\n",
            r.adapters,
            mb(r.set_bytes),
            mb(r.merged_bytes),
            r.switches,
            r.set_requests_per_s,
            r.merged_requests_per_s,
            r.set_requests_per_s / r.merged_requests_per_s,
            r.max_diff
        ));
    }
    if let Some(r) = rows.first() {
        out.push_str(&format!(
            "memory: set = base {} + N × adapter {}; merged = N × base; every tensor held counted\n",
            mb(r.base_bytes),
            format_args!("{:.1} KB", r.adapter_bytes as f64 / 1e3)
        ));
    }
    out.push_str(
        "set: one base + N adapters (AdapterSet), the requested one activated per request (a pointer swap per base tensor), LoRA added in the forward\n\
         merged: each adapter folded into its own copy of the base, run without hooks\n\
         ratio: set req/s ÷ merged req/s; max |diff|: the largest logit difference between the two paths over all requests (the fold's f32 rounding)\n\
         wall-clock times of this run on this machine: rerun on a quiet machine for speed claims\n",
    );
    out
}
