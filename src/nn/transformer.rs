//! The transformer: embeddings, L residual blocks of attention and MLP, and the LM head, in the
//! GPT-2 wiring (pre-LN, causal) or the BERT wiring (post-LN, bidirectional), under Hugging Face
//! weight names.
//!
//! Shapes: ids (B, T) → embeddings (B, T, C) → per block: q, k, v (B, NH, T, HS) → attention
//! (B, NH, T, HS) → (B, T, C) → MLP (B, T, d_ff) → (B, T, C) → hidden (B, T, C) → logits (B, T, V).

use super::config::{Activation, Arch, Config};
use super::hooks::{Hooks, NoHooks, Role};
use super::layer_cache::{key_padding, LayerCache};
use super::layers::{normal, LayerNorm, Layout, Linear, LinearSpec};
use crate::autodiff::{
    AttnMask, ParamId, ParamStore, Recompute, Segment, Tape, Var, SHARED_DOCUMENT,
};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A batch of token ids with its masks. Masks and positions default to "all real, 0..T".
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// (B, T) token ids.
    pub ids: ArrayView2<'a, usize>,
    /// (B, T), `true` for real tokens, `false` for padding.
    pub mask: Option<ArrayView2<'a, bool>>,
    /// (B, T) position ids (left padding shifts them so the first real token is at 0).
    pub positions: Option<ArrayView2<'a, usize>>,
    /// (B, T) segment ids (BERT).
    pub token_types: Option<ArrayView2<'a, usize>>,
    /// (B, T) document ids of packed rows: a token attends only to tokens of its own document
    /// (the block-diagonal mask; positions should restart per document). `None`: one per row.
    pub documents: Option<ArrayView2<'a, usize>>,
}

impl<'a> Input<'a> {
    pub fn new(ids: ArrayView2<'a, usize>) -> Self {
        Self {
            ids,
            mask: None,
            positions: None,
            token_types: None,
            documents: None,
        }
    }

    pub fn with_mask(mut self, mask: ArrayView2<'a, bool>) -> Self {
        self.mask = Some(mask);
        self
    }

    pub fn with_positions(mut self, positions: ArrayView2<'a, usize>) -> Self {
        self.positions = Some(positions);
        self
    }

    /// Packed rows: the document of each token (see [`Input::documents`]).
    pub fn with_documents(mut self, documents: ArrayView2<'a, usize>) -> Self {
        self.documents = Some(documents);
        self
    }
}

/// The attention projections: GPT-2 fuses q, k, v into one Linear; BERT keeps three.
#[derive(Debug, Clone)]
pub enum Qkv {
    Fused(Linear),
    Split { q: Linear, k: Linear, v: Linear },
}

/// One residual block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The LayerNorm of the attention sublayer (before it in pre-LN, after the add in post-LN).
    pub ln_attn: LayerNorm,
    pub qkv: Qkv,
    pub attn_out: Linear,
    /// The LayerNorm of the MLP sublayer.
    pub ln_mlp: LayerNorm,
    pub fc: Linear,
    pub proj: Linear,
}

/// BERT's masked-LM head transform (the decoder is tied to the word embeddings).
#[derive(Debug, Clone)]
pub struct MlmHead {
    pub dense: Linear,
    pub ln: LayerNorm,
    pub bias: ParamId,
}

/// The model: ids of every parameter, by role. The tensors live in a [`ParamStore`].
#[derive(Debug, Clone)]
pub struct Transformer {
    pub config: Config,
    pub tok_emb: ParamId,
    pub pos_emb: ParamId,
    pub type_emb: Option<ParamId>,
    pub emb_ln: Option<LayerNorm>,
    pub blocks: Vec<Block>,
    pub ln_f: Option<LayerNorm>,
    /// An untied LM head (V, C); `None` when tied to the token embeddings.
    pub lm_head: Option<ParamId>,
    pub mlm_head: Option<MlmHead>,
    /// BERT's pooler (dense + tanh on [CLS]), used by [CLS] pooling.
    pub pooler: Option<Linear>,
}

impl Transformer {
    /// Creates a randomly initialised model in `store` (GPT-2's init: normal(0, 0.02), output
    /// projections scaled by 1/√(2L), LayerNorms at identity).
    pub fn new<F: Float>(config: Config, store: &mut ParamStore<F>, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let c = config.d_model;
        let std = 0.02;
        let proj_std = std / (2.0 * config.n_layers.max(1) as f64).sqrt();
        let (gpt, eps) = (config.arch == Arch::Gpt, config.layer_norm_eps);
        let layout = if gpt { Layout::InOut } else { Layout::OutIn };
        let (tok, pos, typ) = if gpt {
            ("wte.weight", "wpe.weight", "")
        } else {
            (
                "embeddings.word_embeddings.weight",
                "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight",
            )
        };
        let tok_emb = store.add(tok, normal(&[config.vocab_size, c], std, &mut rng), true)?;
        let pos_emb = store.add(
            pos,
            normal(&[config.max_len, c], if gpt { 0.01 } else { std }, &mut rng),
            true,
        )?;
        let type_emb = if config.type_vocab_size > 0 {
            let name = if gpt { "wtt.weight" } else { typ };
            Some(store.add(
                name,
                normal(&[config.type_vocab_size, c], std, &mut rng),
                true,
            )?)
        } else {
            None
        };
        let emb_ln = if gpt {
            None
        } else {
            Some(LayerNorm::new(store, "embeddings.LayerNorm", c, eps)?)
        };
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let linear = |store: &mut ParamStore<F>,
                          rng: &mut StdRng,
                          module: String,
                          d_in,
                          d_out,
                          role,
                          std| {
                Linear::new(
                    store,
                    LinearSpec {
                        module: &module,
                        d_in,
                        d_out,
                        bias: true,
                        layout,
                        role,
                        layer: Some(i),
                        std,
                    },
                    rng,
                )
            };
            let block = if gpt {
                let p = format!("h.{i}");
                Block {
                    ln_attn: LayerNorm::new(store, &format!("{p}.ln_1"), c, eps)?,
                    qkv: Qkv::Fused(linear(
                        store,
                        &mut rng,
                        format!("{p}.attn.c_attn"),
                        c,
                        3 * c,
                        Role::Qkv,
                        std,
                    )?),
                    attn_out: linear(
                        store,
                        &mut rng,
                        format!("{p}.attn.c_proj"),
                        c,
                        c,
                        Role::AttnOut,
                        proj_std,
                    )?,
                    ln_mlp: LayerNorm::new(store, &format!("{p}.ln_2"), c, eps)?,
                    fc: linear(
                        store,
                        &mut rng,
                        format!("{p}.mlp.c_fc"),
                        c,
                        config.d_ff,
                        Role::Fc,
                        std,
                    )?,
                    proj: linear(
                        store,
                        &mut rng,
                        format!("{p}.mlp.c_proj"),
                        config.d_ff,
                        c,
                        Role::Proj,
                        proj_std,
                    )?,
                }
            } else {
                let p = format!("encoder.layer.{i}");
                let q = linear(
                    store,
                    &mut rng,
                    format!("{p}.attention.self.query"),
                    c,
                    c,
                    Role::Query,
                    std,
                )?;
                let k = linear(
                    store,
                    &mut rng,
                    format!("{p}.attention.self.key"),
                    c,
                    c,
                    Role::Key,
                    std,
                )?;
                let v = linear(
                    store,
                    &mut rng,
                    format!("{p}.attention.self.value"),
                    c,
                    c,
                    Role::Value,
                    std,
                )?;
                Block {
                    qkv: Qkv::Split { q, k, v },
                    attn_out: linear(
                        store,
                        &mut rng,
                        format!("{p}.attention.output.dense"),
                        c,
                        c,
                        Role::AttnOut,
                        proj_std,
                    )?,
                    ln_attn: LayerNorm::new(
                        store,
                        &format!("{p}.attention.output.LayerNorm"),
                        c,
                        eps,
                    )?,
                    fc: linear(
                        store,
                        &mut rng,
                        format!("{p}.intermediate.dense"),
                        c,
                        config.d_ff,
                        Role::Fc,
                        std,
                    )?,
                    proj: linear(
                        store,
                        &mut rng,
                        format!("{p}.output.dense"),
                        config.d_ff,
                        c,
                        Role::Proj,
                        proj_std,
                    )?,
                    ln_mlp: LayerNorm::new(store, &format!("{p}.output.LayerNorm"), c, eps)?,
                }
            };
            blocks.push(block);
        }
        let ln_f = if gpt {
            Some(LayerNorm::new(store, "ln_f", c, eps)?)
        } else {
            None
        };
        let lm_head = if config.tied_head {
            None
        } else {
            Some(store.add(
                "lm_head.weight",
                normal(&[config.vocab_size, c], std, &mut rng),
                true,
            )?)
        };
        let (mlm_head, pooler) = if gpt {
            (None, None)
        } else {
            let spec = |module, role| LinearSpec {
                module,
                d_in: c,
                d_out: c,
                bias: true,
                layout,
                role,
                layer: None,
                std,
            };
            let dense = Linear::new(
                store,
                spec("cls.predictions.transform.dense", Role::Other),
                &mut rng,
            )?;
            let ln = LayerNorm::new(store, "cls.predictions.transform.LayerNorm", c, eps)?;
            let bias = store.add(
                "cls.predictions.bias",
                ArrayD::zeros(IxDyn(&[config.vocab_size])),
                true,
            )?;
            let pooler = Linear::new(store, spec("pooler.dense", Role::Other), &mut rng)?;
            (Some(MlmHead { dense, ln, bias }), Some(pooler))
        };
        Ok(Self {
            config,
            tok_emb,
            pos_emb,
            type_emb,
            emb_ln,
            blocks,
            ln_f,
            lm_head,
            mlm_head,
            pooler,
        })
    }

    fn activation<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        match self.config.activation {
            Activation::GeluTanh => tape.gelu_tanh(x),
            Activation::GeluErf => tape.gelu_erf(x),
        }
    }

    /// (B, T, C) → (B, NH, T, HS), as a strided view of the same data (no copy in attention).
    fn split_heads<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let s = tape.shape(x).to_vec();
        let (nh, hs) = (self.config.n_heads, self.config.head_size());
        let x = tape.reshape(x, &[s[0], s[1], nh, hs])?;
        tape.permute(x, &[0, 2, 1, 3])
    }

    /// Every Linear of the blocks (q, k, v or the fused c_attn, the attention output, the MLP's
    /// two), in block order: what LoRA targets and what `--base-dtype nf4` quantises.
    pub fn block_linears(&self) -> Vec<&Linear> {
        let mut out = Vec::new();
        for b in &self.blocks {
            match &b.qkv {
                Qkv::Fused(l) => out.push(l),
                Qkv::Split { q, k, v } => out.extend([q, k, v]),
            }
            out.extend([&b.attn_out, &b.fc, &b.proj]);
        }
        out
    }

    /// Token + position (+ segment) embeddings, (B, T, C): what the blocks (and the
    /// [`Hooks::embeddings`] hook) receive. No hooks: [`Transformer::embed_with`] with none.
    pub fn embed<F: Float>(&self, tape: &mut Tape<'_, F>, input: &Input<'_>) -> Result<Var> {
        self.embed_with(tape, &NoHooks, input)
    }

    /// [`Transformer::embed`], with the token embeddings (B, T, C) passed through
    /// [`Hooks::token_embeddings`] before the positions are added (where NEFTune adds noise).
    pub fn embed_with<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        input: &Input<'_>,
    ) -> Result<Var> {
        let (b, t) = input.ids.dim();
        if t > self.config.max_len {
            return invalid(
                "transformer",
                format!(
                    "sequence of {t} tokens is longer than max_len {}",
                    self.config.max_len
                ),
            );
        }
        let positions = match input.positions {
            Some(p) if p.dim() != (b, t) => {
                return shape_err(
                    "transformer",
                    format!("positions are {:?}, ids are ({b}, {t})", p.dim()),
                )
            }
            Some(p) => p.to_owned(),
            None => Array2::from_shape_fn((b, t), |(_, j)| j),
        };
        let wte = tape.param(self.tok_emb);
        let wpe = tape.param(self.pos_emb);
        let tok = tape.embedding(wte, input.ids)?;
        let tok = hooks.token_embeddings(tape, tok)?;
        let pos = tape.embedding(wpe, positions.view())?;
        let mut x = tape.add(tok, pos)?;
        if let Some(type_emb) = self.type_emb {
            let types = match input.token_types {
                Some(tt) => tt.to_owned(),
                None => Array2::zeros((b, t)),
            };
            let wtt = tape.param(type_emb);
            let e = tape.embedding(wtt, types.view())?;
            x = tape.add(x, e)?;
        }
        if let Some(ln) = &self.emb_ln {
            x = ln.forward(tape, x)?;
        }
        Ok(x)
    }

    /// The hidden states (B, T, C) after the last block (and `ln_f` for GPT).
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        input: &Input<'_>,
    ) -> Result<Var> {
        let (b, t) = input.ids.dim();
        if let Some(m) = input.mask {
            if m.dim() != (b, t) {
                return shape_err(
                    "transformer",
                    format!("mask is {:?}, ids are ({b}, {t})", m.dim()),
                );
            }
        }
        let cfg = &self.config;
        let x = self.embed_with(tape, hooks, input)?;
        // A method may prepend P virtual tokens (prompt tuning); they are real for attention.
        let x = hooks.embeddings(tape, x)?;
        let total = tape.shape(x)[1];
        let virtual_tokens = total.checked_sub(t).ok_or_else(|| crate::Error::Shape {
            op: "transformer",
            detail: "the embeddings hook shortened the sequence".into(),
        })?;
        let mask: Array2<bool> = match input.mask {
            Some(m) => Array2::from_shape_fn((b, total), |(i, j)| {
                j < virtual_tokens || m[[i, j - virtual_tokens]]
            }),
            None => Array2::from_elem((b, total), true),
        };
        let documents = match input.documents {
            Some(d) if d.dim() != (b, t) => {
                return shape_err(
                    "transformer",
                    format!("document ids are {:?}, ids are ({b}, {t})", d.dim()),
                )
            }
            Some(_) if virtual_tokens > 0 => {
                return invalid(
                    "transformer",
                    "packed rows (document ids) with virtual tokens: a prompt-tuning method's \
                     tokens would belong to no document",
                )
            }
            Some(d) => Some(d.to_owned()),
            None => None,
        };
        let docs = documents.as_ref();
        let mut x = tape.dropout(x, cfg.dropout)?;
        for i in 0..self.blocks.len() {
            x = if tape.checkpointing() {
                let segment = Segment {
                    index: i,
                    mask: mask.clone(),
                    documents: documents.clone(),
                };
                tape.checkpoint(segment, x, |tape, x| {
                    self.block_packed(tape, hooks, i, x, &mask, docs, None)
                })?
            } else {
                // Only what some backward reads outlives the block.
                let mark = tape.mark();
                let y = self.block_packed(tape, hooks, i, x, &mask, docs, None)?;
                tape.release_unsaved(mark, &[y]);
                y
            };
        }
        if let Some(ln) = &self.ln_f {
            x = ln.forward(tape, x)?;
        }
        if virtual_tokens > 0 {
            x = tape.slice(x, 1, virtual_tokens, total)?;
        }
        Ok(x)
    }

    /// Block `i` on the residual stream x (B, T, C): the attention sublayer, then the MLP, each
    /// with its residual add and LayerNorm. `mask` (B, T) marks the real tokens.
    pub fn block<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        i: usize,
        x: Var,
        mask: &Array2<bool>,
    ) -> Result<Var> {
        self.block_cached(tape, hooks, i, x, mask, None)
    }

    /// [`Transformer::block`] with an optional key/value cache ([`LayerCache`]): the tokens of x
    /// (B, T, C) come after the cached ones. Their keys and values (after [`Hooks::key_value`],
    /// whose prepended keys the cache already holds) are appended to the cache, and their
    /// queries attend to every cached key and to their own. Without a cache it is the plain
    /// block; with an empty one it is the plain block that also fills the cache (a prefill).
    pub fn block_cached<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        i: usize,
        x: Var,
        mask: &Array2<bool>,
        cache: Option<&mut LayerCache<F>>,
    ) -> Result<Var> {
        self.block_packed(tape, hooks, i, x, mask, None, cache)
    }

    /// [`Transformer::block_cached`] where the rows may be packed: `documents` (B, T) holds each
    /// position's document, and attention stays within it (not with a cache).
    #[allow(clippy::too_many_arguments)]
    fn block_packed<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        i: usize,
        mut x: Var,
        mask: &Array2<bool>,
        documents: Option<&Array2<usize>>,
        cache: Option<&mut LayerCache<F>>,
    ) -> Result<Var> {
        let (cfg, block) = (&self.config, &self.blocks[i]);
        let p_drop = cfg.dropout;
        let (b, total) = mask.dim();
        // Attention sublayer.
        let h = if cfg.pre_ln {
            block.ln_attn.forward(tape, x)?
        } else {
            x
        };
        let (q, k, v) = match &block.qkv {
            Qkv::Fused(lin) => {
                let qkv = lin.forward(tape, hooks, h)?;
                let c = cfg.d_model;
                (
                    tape.slice(qkv, 2, 0, c)?,
                    tape.slice(qkv, 2, c, 2 * c)?,
                    tape.slice(qkv, 2, 2 * c, 3 * c)?,
                )
            }
            Qkv::Split { q, k, v } => (
                q.forward(tape, hooks, h)?,
                k.forward(tape, hooks, h)?,
                v.forward(tape, hooks, h)?,
            ),
        };
        let (q, k, v) = (
            self.split_heads(tape, q)?,
            self.split_heads(tape, k)?,
            self.split_heads(tape, v)?,
        );
        let (k, v) = hooks.key_value(tape, i, k, v)?;
        let y = match cache {
            None => {
                let s_ = tape.shape(k)[2];
                let attn_mask = AttnMask {
                    causal: cfg.causal,
                    key_padding: Some(key_padding(mask, s_)),
                    // Keys a method prepends (prefix tuning) belong to every document.
                    documents: documents.map(|d| {
                        let p = s_ - d.ncols().min(s_);
                        Array2::from_shape_fn((d.nrows(), s_), |(r, j)| {
                            if j < p {
                                SHARED_DOCUMENT
                            } else {
                                d[[r, j - p]]
                            }
                        })
                    }),
                };
                tape.attention(q, k, v, &attn_mask)?
            }
            Some(cache) => cache.append_attend(tape, (q, k, v), mask, cfg.causal)?,
        };
        let y = tape.permute(y, &[0, 2, 1, 3])?;
        let y = tape.reshape(y, &[b, total, cfg.d_model])?;
        let y = block.attn_out.forward(tape, hooks, y)?;
        let y = tape.dropout(y, p_drop)?;
        x = tape.add(x, y)?;
        if !cfg.pre_ln {
            x = block.ln_attn.forward(tape, x)?;
        }
        // MLP sublayer.
        let h = if cfg.pre_ln {
            block.ln_mlp.forward(tape, x)?
        } else {
            x
        };
        let h = block.fc.forward(tape, hooks, h)?;
        let h = self.activation(tape, h)?;
        let h = hooks.mlp_hidden(tape, i, h)?;
        let h = block.proj.forward(tape, hooks, h)?;
        let h = tape.dropout(h, p_drop)?;
        x = tape.add(x, h)?;
        if !cfg.pre_ln {
            x = block.ln_mlp.forward(tape, x)?;
        }
        Ok(x)
    }

    /// Vocabulary logits (…, V) from hidden states (…, C): the tied or untied LM head for GPT,
    /// the masked-LM head for BERT.
    pub fn lm_logits<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        hidden: Var,
    ) -> Result<Var> {
        let mut h = hidden;
        if let Some(head) = &self.mlm_head {
            h = head.dense.forward(tape, hooks, h)?;
            h = self.activation(tape, h)?;
            h = head.ln.forward(tape, h)?;
        }
        let w = tape.param(self.lm_head.unwrap_or(self.tok_emb));
        let mut logits = tape.matmul_t(h, w, false, true)?;
        if let Some(head) = &self.mlm_head {
            let bias = tape.param(head.bias);
            logits = tape.add(logits, bias)?;
        }
        Ok(logits)
    }
}

/// Gradient checkpointing's other half: backward runs block `segment.index` again through the
/// same hooks (see [`Tape::checkpoint`]).
pub struct BlockRecompute<'a, F: Float> {
    pub model: &'a Transformer,
    pub hooks: &'a dyn Hooks<F>,
}

impl<F: Float> Recompute<F> for BlockRecompute<'_, F> {
    fn recompute(&self, tape: &mut Tape<'_, F>, segment: &Segment, x: Var) -> Result<Var> {
        self.model.block_packed(
            tape,
            self.hooks,
            segment.index,
            x,
            &segment.mask,
            segment.documents.as_ref(),
            None,
        )
    }
}
