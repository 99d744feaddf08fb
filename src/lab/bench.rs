//! One training step of a method on the benchmark GPT, as the criterion benchmarks and
//! `benches/pytorch_reference.py` time it.
//!
//! The model is GPT-2 shaped (pre-LN, causal, tied head, tanh GELU) with dropout off, so that
//! PyTorch builds exactly the same computation: C = 256 (or 512), L = 4, NH = C / 64, T = 128,
//! B = 8, V = 4096, random token ids and next-token targets. A step is forward, cross-entropy,
//! backward, AdamW (PyTorch's defaults, lr 1e-4) and zeroing the gradients.
//!
//! [`StepBench::new`] keeps freed memory in the process as the CLI does
//! ([`crate::kernels::keep_freed_memory`]), so the benchmarks time the step the CLI runs and not
//! glibc handing the step's large buffers back to the kernel and faulting them in again.

use crate::autodiff::{Grads, ParamStore, Tape};
use crate::error::Result;
use crate::nn::{BlockRecompute, Config, Hooks, Input, Transformer};
use crate::optim::{AdamW, AdamWConfig, Optimizer};
use crate::peft::{self, Method, MethodSpec};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The methods the benchmarks compare, with the options they use: the registry's bench
/// examples ([`crate::peft::registry::bench_examples`]), by benchmark id.
pub fn methods() -> Vec<(&'static str, MethodSpec)> {
    crate::peft::registry::bench_examples()
}

/// The shape of the benchmark model and batch.
#[derive(Debug, Clone, Copy)]
pub struct BenchShape {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub vocab: usize,
}

impl BenchShape {
    /// d = 256, L = 4, NH = 4, T = 128, B = 8, V = 4096 (or d = 512 with NH = 8).
    pub fn gpt(d_model: usize) -> Self {
        Self {
            d_model,
            n_layers: 4,
            n_heads: d_model / 64,
            seq_len: 128,
            batch: 8,
            vocab: 4096,
        }
    }

    pub fn tokens(&self) -> usize {
        self.batch * self.seq_len
    }
}

/// A benchmark model: the transformer, its parameters and the method applied to them.
type BenchModel = (Transformer, ParamStore<f32>, Box<dyn Method<f32>>);

/// The benchmark GPT of `shape` (dropout off, seeded) with `spec` applied.
fn bench_model(shape: BenchShape, spec: &MethodSpec) -> Result<BenchModel> {
    let mut config = Config::gpt(
        shape.vocab,
        shape.d_model,
        shape.n_heads,
        shape.n_layers,
        shape.seq_len,
    );
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 1)?;
    let method = peft::apply(spec, &model, &mut store, 2)?;
    Ok((model, store, method))
}

/// A model with a method applied, its optimizer and one fixed batch.
pub struct StepBench {
    pub shape: BenchShape,
    model: Transformer,
    method: Box<dyn Method<f32>>,
    store: ParamStore<f32>,
    opt: AdamW<f32>,
    grads: Grads<f32>,
    ids: Array2<usize>,
    targets: Vec<i64>,
    checkpointing: bool,
}

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub loss: f64,
    /// Bytes the tape held for backward once the loss was computed (the activation memory).
    pub activation_bytes: usize,
}

impl StepBench {
    /// The model, method, optimizer and batch; also sets malloc up as the CLI does.
    pub fn new(shape: BenchShape, spec: &MethodSpec) -> Result<Self> {
        crate::kernels::keep_freed_memory();
        let (model, store, method) = bench_model(shape, spec)?;
        let mut rng = StdRng::seed_from_u64(3);
        let ids = Array2::from_shape_fn((shape.batch, shape.seq_len + 1), |_| {
            rng.random_range(0..shape.vocab)
        });
        let targets = ids
            .slice(ndarray::s![.., 1..])
            .iter()
            .map(|&t| t as i64)
            .collect();
        let ids = ids.slice(ndarray::s![.., ..shape.seq_len]).to_owned();
        let grads = Grads::new(&store);
        Ok(Self {
            shape,
            model,
            method,
            store,
            opt: AdamW::new(AdamWConfig::default())?,
            grads,
            ids,
            targets,
            checkpointing: false,
        })
    }

    /// The same step with gradient checkpointing (each block recomputed in backward).
    pub fn with_gradient_checkpointing(mut self, on: bool) -> Self {
        self.checkpointing = on;
        self
    }

    /// One training step; returns the loss.
    pub fn step(&mut self) -> Result<f64> {
        Ok(self.step_measured()?.loss)
    }

    /// One training step, as the Trainer runs it: forward, the tape reduced to what backward
    /// reads, backward (recomputing blocks when checkpointing), AdamW.
    pub fn step_measured(&mut self) -> Result<StepReport> {
        let hooks: &dyn Hooks<f32> = self.method.as_ref();
        let report = {
            let mut tape = Tape::new(&self.store);
            tape.set_checkpointing(self.checkpointing);
            let h = self
                .model
                .forward(&mut tape, hooks, &Input::new(self.ids.view()))?;
            let logits = self.model.lm_logits(&mut tape, hooks, h)?;
            let loss = tape.cross_entropy(logits, &self.targets, -100)?;
            tape.release_unsaved(0, &[loss]);
            let activation_bytes = tape.activation_bytes();
            let recompute = BlockRecompute {
                model: &self.model,
                hooks,
            };
            tape.backward_recomputing(loss, &mut self.grads, &recompute)?;
            StepReport {
                loss: tape.scalar(loss)? as f64,
                activation_bytes,
            }
        };
        self.opt.step(&mut self.store, &self.grads, 1e-4);
        self.grads.zero();
        Ok(report)
    }

    /// FLOPs of one step counted by the kernels: the matrix products of forward and backward.
    pub fn matmul_flops(&mut self) -> Result<u64> {
        let before = crate::kernels::stats();
        self.step()?;
        Ok(crate::kernels::stats().gemm_flops - before.gemm_flops)
    }
}

/// Generation on the benchmark GPT: a batch of random prompts continued by a fixed number of
/// greedy tokens (no end token, so every row produces them all), with the key/value cache
/// ([`crate::nn::generate::generate`]) or without ([`crate::nn::generate::generate_uncached`]).
pub struct GenerateBench {
    pub shape: BenchShape,
    pub prompt_len: usize,
    pub new_tokens: usize,
    model: Transformer,
    method: Box<dyn Method<f32>>,
    store: ParamStore<f32>,
    prompts: Vec<Vec<usize>>,
}

impl GenerateBench {
    /// `shape.batch` prompts of `prompt_len` random tokens, `new_tokens` to generate; the model
    /// has `shape.seq_len` positions, so `prompt_len + new_tokens` should fit in it.
    pub fn new(
        shape: BenchShape,
        spec: &MethodSpec,
        prompt_len: usize,
        new_tokens: usize,
    ) -> Result<Self> {
        let (model, store, method) = bench_model(shape, spec)?;
        let mut rng = StdRng::seed_from_u64(4);
        let prompts = (0..shape.batch)
            .map(|_| {
                (0..prompt_len)
                    .map(|_| rng.random_range(0..shape.vocab))
                    .collect()
            })
            .collect();
        Ok(Self {
            shape,
            prompt_len,
            new_tokens,
            model,
            method,
            store,
            prompts,
        })
    }

    /// Tokens one run produces (batch × new tokens).
    pub fn tokens(&self) -> usize {
        self.shape.batch * self.new_tokens
    }

    /// Generates once, cached or not; returns the tokens produced.
    pub fn run(&self, cached: bool) -> Result<Vec<Vec<usize>>> {
        let opts = crate::nn::generate::GenerateOptions {
            max_new_tokens: self.new_tokens,
            ..Default::default()
        };
        let (model, store, hooks) = (&self.model, &self.store, self.method.as_ref());
        if cached {
            crate::nn::generate::generate(model, store, hooks, &self.prompts, &opts)
        } else {
            crate::nn::generate::generate_uncached(model, store, hooks, &self.prompts, &opts)
        }
    }
}
