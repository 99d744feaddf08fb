//! Prompt tuning (Lester et al., 2021): P learned "soft prompt" vectors (P, C) are prepended to
//! the embedded input through the [`Hooks::embeddings`] hook, (B, T, C) → (B, P + T, C), the same
//! P vectors for every sequence of the batch. Everything else stays frozen; the model learns the
//! task only through what the prompt makes the frozen layers do.
//!
//! Masks and labels. The transformer marks the P virtual positions as real keys (every token may
//! attend to them; with the causal mask they come before every token) and strips them again from
//! its output, so heads, losses and labels see (B, T, ·) exactly as without a prompt. PEFT instead
//! returns (B, P + T, V) logits and prepends P labels of −100 (ignored) to the labels; the ignored
//! positions add nothing to the loss, so the two are the same computation. Padding masks need no
//! change either: the transformer prepends P `true`s to the key mask, as PEFT prepends P ones to
//! the attention mask.
//!
//! Where the prompt enters. The hook sees the embeddings after token + position (+ segment)
//! embeddings and, for BERT, after the embedding LayerNorm. So the soft prompt carries no
//! position embedding (it is learned and can absorb one) and real tokens keep positions 0..T
//! (PEFT on GPT-2 instead shifts them to P..P + T); on BERT the prompt bypasses the embedding
//! LayerNorm.
//!
//! Initialisation: from real vocabulary words ([`PromptInit::Vocab`], which Lester et al. found
//! to train better than random init; ids are cycled if fewer than P, as PEFT does), as the
//! embedding layer outputs them at positions 0..P: token + position (+ segment, and BERT's
//! LayerNorm). The prompt itself carries no position, so copying bare token rows (as PEFT does,
//! whose prompts then receive position embeddings) would hand the frozen layers vectors they
//! never saw in pre-training; on gpt-tiny's sentiment task (150 steps, lr 1e-2) the embedded words
//! reached a higher test accuracy than bare rows. Or random ([`PromptInit::Random`]: normal with
//! the standard deviation of the token-embedding table), which on the same run stayed at chance.
//! The model's output changes at initialisation: the prompt is attended to from step 0.

use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::options::MethodOptions;
use super::prefix::repeat_batch;
use super::spec::MethodSpec;
pub use super::spec::PromptInit;
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::data::tokenizer::Tokenizer;
use crate::error::{invalid, shape_err, Result};
use crate::nn::layers::normal;
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Input, Transformer};
use crate::tensor::{fmt_shape, Float};
use ndarray::{Array2, Ix2};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The soft prompt (P, C), under the name PEFT saves it as.
pub const PROMPT: &str = "prompt_embeddings";

/// Prompt tuning's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "prompt",
    help: "P soft-prompt embeddings before the input (--n-virtual, --prompt-init-text)",
    identity_at_init: false,
    spec,
    examples,
};

/// The spec from the command line: `--prompt-init-text` is encoded with the base's tokenizer
/// (random init without one).
fn spec(o: &MethodOptions, tok: Option<&Tokenizer>) -> Result<MethodSpec> {
    let init = match (&o.prompt_init_text, tok) {
        (Some(text), Some(tok)) => PromptInit::Vocab(
            tok.encode(text, false)?
                .into_iter()
                .map(|i| i as usize)
                .collect(),
        ),
        _ => PromptInit::Random,
    };
    Ok(MethodSpec::Prompt {
        n_virtual: o.n_virtual,
        init,
    })
}

fn examples(ctx: &ExampleContext) -> Examples {
    let spec = |n_virtual, init| MethodSpec::Prompt { n_virtual, init };
    let vocab = |ids: &[usize]| PromptInit::Vocab(ids.to_vec());
    Examples {
        compare: vec![CompareExample {
            label: "prompt P=10",
            spec: spec(
                10,
                if ctx.vocab_init.is_empty() {
                    PromptInit::Random
                } else {
                    vocab(&ctx.vocab_init)
                },
            ),
            lr: 1e-2,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![("prompt_10", spec(10, PromptInit::Random))],
        tests: vec![
            ("prompt", spec(3, PromptInit::Random)),
            ("prompt_vocab", spec(2, vocab(&[4, 9]))),
            ("prompt_vocab3", spec(2, vocab(&[4, 9, 1]))),
        ],
    }
}

/// Prompt tuning applied to a model.
pub struct Prompt {
    pub n_virtual: usize,
    pub init: PromptInit,
    /// The soft prompt (P, C).
    pub prompt: ParamId,
    d_model: usize,
    params: Vec<ParamId>,
}

impl Prompt {
    /// Adds the soft prompt to `store`, trainable (the base is left as the caller set it;
    /// [`super::registry::apply`] freezes it).
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        n_virtual: usize,
        init: PromptInit,
        seed: u64,
    ) -> Result<Self> {
        if n_virtual == 0 {
            return invalid(
                "prompt",
                "n_virtual (the prompt length P) must be at least 1",
            );
        }
        let (v, c) = (model.config.vocab_size, model.config.d_model);
        let wte = store
            .value(model.tok_emb)
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| crate::Error::Shape {
                op: "prompt",
                detail: "the token embedding table is not 2-D".into(),
            })?;
        let value = match &init {
            PromptInit::Random => {
                let n = wte.len().max(1) as f64;
                let mean = wte.iter().map(|x| x.as_f64()).sum::<f64>() / n;
                let var = wte.iter().map(|x| (x.as_f64() - mean).powi(2)).sum::<f64>() / n;
                let std = if var.is_finite() && var > 0.0 {
                    var.sqrt()
                } else {
                    0.02
                };
                normal(&[n_virtual, c], std, &mut StdRng::seed_from_u64(seed))
            }
            PromptInit::Vocab(ids) => {
                if ids.is_empty() {
                    return invalid("prompt", "vocabulary init needs at least one token id");
                }
                if let Some(bad) = ids.iter().find(|&&i| i >= v) {
                    return invalid(
                        "prompt",
                        format!("init token id {bad} is outside the vocabulary of {v}"),
                    );
                }
                // What the embedding layer makes of those words at positions 0..P: token
                // + position (+ segment, and BERT's LayerNorm), as the frozen layers saw
                // text at the start of a sequence in pre-training.
                let ids = Array2::from_shape_fn((1, n_virtual), |(_, i)| ids[i % ids.len()]);
                let mut tape = Tape::inference(store);
                let x = model.embed(&mut tape, &Input::new(ids.view()))?;
                tape.value(x)
                    .to_shape((n_virtual, c))
                    .map_err(|e| crate::Error::Shape {
                        op: "prompt",
                        detail: e.to_string(),
                    })?
                    .to_owned()
                    .into_dyn()
            }
        };
        let prompt = store.add(PROMPT, value, true)?;
        Ok(Self {
            n_virtual,
            init,
            prompt,
            d_model: c,
            params: vec![prompt],
        })
    }
}

impl<F: Float> Hooks<F> for Prompt {
    // ANCHOR: embeddings
    fn embeddings(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let s = tape.shape(x).to_vec();
        if s.len() != 3 || s[2] != self.d_model {
            return shape_err(
                "prompt",
                format!(
                    "embeddings are {}, expected (B, T, {})",
                    fmt_shape(&s),
                    self.d_model
                ),
            );
        }
        let p = tape.param(self.prompt); // (P, C)
        let p = tape.reshape(p, &[1, self.n_virtual, self.d_model])?;
        let p = repeat_batch(tape, p, s[0])?; // (B, P, C)
        tape.concat(&[p, x], 1) // (B, P + T, C)
    }
    // ANCHOR_END: embeddings
}

impl<F: Float> Method<F> for Prompt {
    fn name(&self) -> &'static str {
        "prompt"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }
}
