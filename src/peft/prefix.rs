//! Prefix tuning (Li & Liang, 2021): every layer gets P learned key and value vectors, prepended
//! to that layer's keys and values through the [`Hooks::key_value`] hook. Every query attends to
//! the P prefix positions as if they were earlier tokens (the causal mask lets query t see keys
//! up to t + P, see [`crate::autodiff::AttnMask`]); the prefix positions produce no output of
//! their own, so nothing downstream (heads, labels, padding masks) changes shape.
//!
//! All prefixes live in one table of shape (P, 2·L·C), laid out as PEFT lays out
//! `past_key_values`: column block 2l holds layer l's keys, block 2l + 1 its values, and inside a
//! block of C columns head h owns columns h·HS..(h+1)·HS. Layer l's keys are turned into
//! (B, NH, P, HS) by slice → reshape (P, NH, HS) → permute (NH, P, HS) → B copies.
//!
//! Li & Liang report that optimising that table directly is unstable, so by default it is
//! reparameterized as the output of a small MLP on a learned embedding E (P, C):
//!
//! ```text
//! table = tanh(E W1ᵀ + b1) W2ᵀ + b2        W1 (hidden, C), W2 (2·L·C, hidden)
//! ```
//!
//! (PEFT's `PrefixEncoder` with `prefix_projection=True`). Each layer computes only its own
//! 2·C output columns (slices of W2 and b2); the first Linear is recomputed per layer, which
//! costs L·P·C·hidden multiply-adds on P rows, nothing next to the model's B·T rows, and keeps the
//! hook free of per-forward state. After training, [`Method::finalize`] runs the MLP once,
//! stores the result as the plain parameter `prompt_embeddings` (P, 2·L·C) and switches to it:
//! the MLP is frozen and no longer used, and [`Method::params`] then names only the table, which
//! is exactly what PEFT writes to `adapter_model.safetensors` for prefix tuning.
//!
//! Unlike LoRA, prefix tuning changes the model's output at initialisation: the random prefix
//! keys and values take part of every query's attention from step 0.

use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::nn::layers::normal;
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Transformer};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Prefix tuning's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "prefix",
    help: "P learned keys and values in every layer (--n-virtual, --prefix-hidden, --no-reparam)",
    identity_at_init: false,
    spec: |o, _| {
        Ok(MethodSpec::Prefix {
            n_virtual: o.n_virtual,
            reparameterize: !o.no_reparam,
            hidden: o.prefix_hidden,
        })
    },
    examples,
};

fn examples(_: &ExampleContext) -> Examples {
    let spec = |n_virtual, reparameterize, hidden| MethodSpec::Prefix {
        n_virtual,
        reparameterize,
        hidden,
    };
    Examples {
        // Trained directly in `compare`: through the MLP it needs more steps than the budget.
        compare: vec![CompareExample {
            label: "prefix P=10",
            spec: spec(10, false, 128),
            lr: 3e-2,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![("prefix_10", spec(10, true, 128))],
        tests: vec![
            ("prefix", spec(3, true, 5)),
            ("prefix_table", spec(2, false, 0)),
            ("prefix_table3", spec(3, false, 0)),
        ],
    }
}

/// The prefix table (P, 2·L·C): trained directly, or the folded output of the MLP.
pub const TABLE: &str = "prompt_embeddings";
/// The reparameterization's input embedding E (P, C).
pub const EMBEDDING: &str = "prompt_encoder.embedding.weight";
/// The MLP's first Linear, (hidden, C) and (hidden), PyTorch (out, in) layout.
pub const W1: &str = "prompt_encoder.transform.0.weight";
pub const B1: &str = "prompt_encoder.transform.0.bias";
/// The MLP's second Linear, (2·L·C, hidden) and (2·L·C).
pub const W2: &str = "prompt_encoder.transform.2.weight";
pub const B2: &str = "prompt_encoder.transform.2.bias";

/// Prefix tuning's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixConfig {
    /// P: prefix length (virtual tokens) per layer.
    pub n_virtual: usize,
    /// Train through the MLP reparameterization (true) or the table directly (false).
    pub reparameterize: bool,
    /// The MLP's hidden width (unused without reparameterization).
    pub hidden: usize,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self {
            n_virtual: 10,
            reparameterize: true,
            hidden: 512,
        }
    }
}

/// The reparameterization MLP's parameters.
#[derive(Debug, Clone, Copy)]
pub struct PrefixMlp {
    /// E (P, C).
    pub embedding: ParamId,
    /// W1 (hidden, C), b1 (hidden).
    pub w1: ParamId,
    pub b1: ParamId,
    /// W2 (2·L·C, hidden), b2 (2·L·C).
    pub w2: ParamId,
    pub b2: ParamId,
}

impl PrefixMlp {
    pub fn ids(&self) -> [ParamId; 5] {
        [self.embedding, self.w1, self.b1, self.w2, self.b2]
    }
}

/// Where the prefixes come from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The table (P, 2·L·C) itself.
    Table(ParamId),
    /// The table computed by the MLP on every forward.
    Mlp(PrefixMlp),
}

/// Prefix tuning applied to a model.
pub struct Prefix {
    pub config: PrefixConfig,
    pub source: Source,
    /// L, C, NH of the model.
    n_layers: usize,
    d_model: usize,
    n_heads: usize,
    params: Vec<ParamId>,
}

impl Prefix {
    /// Adds the prefix parameters to `store`, trainable (the base is left as the caller set it;
    /// [`super::registry::apply`] freezes it). Init: E ~ normal(0, 1) as PyTorch's `nn.Embedding`, W1 and
    /// W2 ~ normal(0, 0.02), biases zero, so the prefixes start small (|table| ≈ 0.02·√hidden ·
    /// 0.02·√C) and tanh starts in its linear range; a directly trained table ~ normal(0, 0.02).
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: PrefixConfig,
        seed: u64,
    ) -> Result<Self> {
        if config.n_virtual == 0 {
            return invalid(
                "prefix",
                "n_virtual (the prefix length P) must be at least 1",
            );
        }
        if config.reparameterize && config.hidden == 0 {
            return invalid("prefix", "the reparameterization MLP needs hidden >= 1");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let (p, c, l) = (
            config.n_virtual,
            model.config.d_model,
            model.config.n_layers,
        );
        let width = 2 * l * c;
        let (source, params) = if config.reparameterize {
            let h = config.hidden;
            let mlp = PrefixMlp {
                embedding: store.add(EMBEDDING, normal(&[p, c], 1.0, &mut rng), true)?,
                w1: store.add(W1, normal(&[h, c], 0.02, &mut rng), true)?,
                b1: store.add(B1, ArrayD::zeros(IxDyn(&[h])), true)?,
                w2: store.add(W2, normal(&[width, h], 0.02, &mut rng), true)?,
                b2: store.add(B2, ArrayD::zeros(IxDyn(&[width])), true)?,
            };
            (Source::Mlp(mlp), mlp.ids().to_vec())
        } else {
            let table = store.add(TABLE, normal(&[p, width], 0.02, &mut rng), true)?;
            (Source::Table(table), vec![table])
        };
        Ok(Self {
            config,
            source,
            n_layers: l,
            d_model: c,
            n_heads: model.config.n_heads,
            params,
        })
    }

    /// The parameters in use: the five MLP tensors, or the table once folded (or when trained
    /// directly).
    pub fn params(&self) -> &[ParamId] {
        &self.params
    }

    /// Layer `layer`'s keys and values side by side, (P, 2C): its two column blocks of the table.
    pub fn layer_table<F: Float>(&self, tape: &mut Tape<'_, F>, layer: usize) -> Result<Var> {
        let c2 = 2 * self.d_model;
        let cols = (layer * c2, (layer + 1) * c2);
        match self.source {
            Source::Table(id) => {
                let t = tape.param(id);
                tape.slice(t, 1, cols.0, cols.1)
            }
            Source::Mlp(m) => {
                let e = tape.param(m.embedding); // (P, C)
                let w1 = tape.param(m.w1);
                let b1 = tape.param(m.b1);
                let h = tape.matmul_t(e, w1, false, true)?; // (P, hidden)
                let h = tape.add(h, b1)?;
                let h = tape.tanh(h)?;
                let w2 = tape.param(m.w2);
                let w2 = tape.slice(w2, 0, cols.0, cols.1)?; // (2C, hidden)
                let b2 = tape.param(m.b2);
                let b2 = tape.slice(b2, 0, cols.0, cols.1)?; // (2C)
                let y = tape.matmul_t(h, w2, false, true)?; // (P, 2C)
                tape.add(y, b2)
            }
        }
    }

    // ANCHOR: heads
    /// Block `which` (0 keys, 1 values) of a layer table (P, 2C) as (B, NH, P, HS).
    fn heads<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        table: Var,
        which: usize,
        batch: usize,
    ) -> Result<Var> {
        let (p, c, nh) = (self.config.n_virtual, self.d_model, self.n_heads);
        let x = tape.slice(table, 1, which * c, (which + 1) * c)?; // (P, C)
        let x = tape.reshape(x, &[p, nh, c / nh])?;
        let x = tape.permute(x, &[1, 0, 2])?; // (NH, P, HS)
        let x = tape.reshape(x, &[1, nh, p, c / nh])?;
        repeat_batch(tape, x, batch)
    }
    // ANCHOR_END: heads
}

/// (1, …) → (B, …): B copies along axis 0, by concatenation (exact, and its backward sums the
/// B gradients into the one shared tensor).
pub fn repeat_batch<F: Float>(tape: &mut Tape<'_, F>, x: Var, batch: usize) -> Result<Var> {
    if batch == 1 {
        return Ok(x);
    }
    tape.concat(&vec![x; batch], 0)
}

impl<F: Float> Hooks<F> for Prefix {
    // ANCHOR: key_value
    fn key_value(
        &self,
        tape: &mut Tape<'_, F>,
        layer: usize,
        k: Var,
        v: Var,
    ) -> Result<(Var, Var)> {
        let s = tape.shape(k).to_vec();
        let (nh, hs) = (self.n_heads, self.d_model / self.n_heads);
        if s.len() != 4 || s[1] != nh || s[3] != hs || tape.shape(v) != s.as_slice() {
            return shape_err(
                "prefix",
                format!(
                    "keys {} and values {} do not fit (B, {nh}, T, {hs})",
                    fmt_shape(&s),
                    fmt_shape(tape.shape(v))
                ),
            );
        }
        if layer >= self.n_layers {
            return invalid(
                "prefix",
                format!("layer {layer}, but the prefixes cover {}", self.n_layers),
            );
        }
        let table = self.layer_table(tape, layer)?;
        let pk = self.heads(tape, table, 0, s[0])?;
        let pv = self.heads(tape, table, 1, s[0])?;
        Ok((tape.concat(&[pk, k], 2)?, tape.concat(&[pv, v], 2)?))
    }
    // ANCHOR_END: key_value
}

impl<F: Float> Method<F> for Prefix {
    fn name(&self) -> &'static str {
        "prefix"
    }

    fn params(&self) -> &[ParamId] {
        Prefix::params(self)
    }

    /// Runs the MLP once (with the same ops as the forward pass, so the folded table is
    /// bit-for-bit what training produced), adds it as `prompt_embeddings` (P, 2·L·C), freezes
    /// the MLP and uses the table from now on. Does nothing without the MLP or when called again.
    fn finalize(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        let Source::Mlp(mlp) = self.source else {
            return Ok(());
        };
        let table = {
            let mut tape = Tape::inference(store);
            let parts = (0..self.n_layers)
                .map(|l| self.layer_table(&mut tape, l))
                .collect::<Result<Vec<_>>>()?;
            let t = tape.concat(&parts, 1)?;
            tape.value(t).to_owned()
        };
        let id = store.add(TABLE, table, true)?;
        for m in mlp.ids() {
            store.set_trainable(m, false);
        }
        self.source = Source::Table(id);
        self.params = vec![id];
        Ok(())
    }
}
