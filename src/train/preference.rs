//! Preference tuning as a Trainer task: DPO and its family ([`crate::loss::preference`]) on a
//! causal LM, through the one training loop.
//!
//! ## Data
//!
//! Each response is read as a generation example is ([`crate::data::encode`]): the tokens of
//! `prompt + " " + response`, then the end token, with the prompt masked out of the labels, so
//! log π(y | x) ([`crate::loss::sequence_logps`]) counts the response and its end token only.
//! A micro-batch of B pairs runs as **one** batch of 2B rows, the B chosen responses then the B
//! rejected ones (TRL's `concatenated_forward`), padded on the right: one forward and one
//! backward for both. KTO trains on unpaired examples (a pair's two responses, as TRL's
//! `unpair_preference_dataset`, or the user's `{prompt, completion, label}` rows), each with its
//! mismatched KL sample: its prompt with the completion of the example before it (the last
//! example's for the first), as TRL's `KL_completion_ids` rotation.
//!
//! ## The reference for free
//!
//! The reference policy π_ref is the model as it was when the task was built, without the
//! method. Where it comes from ([`ReferenceKind`]) decides what it costs:
//!
//! | kind | when (auto) | reference weights held | per step |
//! |---|---|---|---|
//! | [`ReferenceKind::BaseWithoutHooks`] | the method leaves every base weight frozen (LoRA, adapters, IA3, prefix, prompt, ...) | none: the policy's own store, run with `NoHooks` | one more forward, no gradient |
//! | [`ReferenceKind::FrozenCopy`] | the method changes base weights (full fine-tuning, BitFit) | a copy of the store | one more forward, no gradient |
//! | [`ReferenceKind::Precomputed`] | asked for (TRL's `precompute_ref_log_probs`); SimPO and ORPO when the method changes base weights (they read the reference only for the evaluation) | two numbers per pair | none (one pass over the data when the task is built) |
//!
//! A frozen-base method is exactly TRL's PEFT case (`use_adapter(model, None)`: the adapters
//! disabled): the base weights are the reference, and no second copy of them exists. The
//! reference always runs on an inference tape (nothing recorded, dropout off), so it adds no
//! activation memory to the step and no gradient. [`PreferenceTask::reference_bytes`] reports
//! what the chosen kind holds, for the memory ledger. A reference from the base without hooks is
//! refused when the method trains a base weight (the reference would move with the policy).
//!
//! ## Evaluation
//!
//! On pairs, with the model in evaluation mode: `loss` (the objective, mean over pairs; KTO's on
//! the pairs unpaired), `accuracy` and `score` (the fraction of pairs whose implicit reward ranks
//! the chosen response above the rejected one), `margin` (the mean reward margin), `reward_chosen`
//! and `reward_rejected`, `logps_chosen` and `logps_rejected` (mean log π over pairs, summed over
//! each response's tokens), `ref_logps_chosen` and `ref_logps_rejected` (the same under π_ref),
//! `logps_chosen_change` and `logps_rejected_change` (their differences: both negative is DPO's
//! likelihood displacement), and `kl`: the mean over chosen responses of
//! Σ_t (log π(y_t) − log π_ref(y_t)) = log π(y_c) − log π_ref(y_c). That is the k1 estimator of
//! KL(π ‖ π_ref) evaluated on the *dataset's* chosen responses rather than on samples from π:
//! unbiased only for y ∼ π, and it can be negative; it measures how far the policy's likelihood
//! of the data it is tuned on moved, which is what β constrains. For the reference-free
//! objectives (SimPO, ORPO) the rewards are theirs (β · mean token log-probability), while the
//! log-probability changes and `kl` are still measured against the model as built.

use super::trainer::{eval_subset, Metrics, MicroBatch, Split, TrainTask};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::data::batch::{pad_with_labels, PadSide};
use crate::data::encode::{encode_memo, Target};
use crate::data::preference::{KtoExample, PreferencePair};
use crate::data::tasks::Example;
use crate::data::tokenizer::Tokenizer;
use crate::error::{invalid, Error, Result};
use crate::loss::preference::{
    mean, KtoInputs, Objective, PairInputs, PreferenceLoss, PreferenceOptions,
};
use crate::loss::sequence_logps;
use crate::nn::{Hooks, Input, NoHooks, Transformer};
use crate::tensor::Float;
use std::collections::HashSet;

/// Where the reference log-probabilities come from (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// The policy's own store, run without the method's hooks: no weights beyond the policy's.
    BaseWithoutHooks,
    /// A frozen copy of the store as the task found it.
    FrozenCopy,
    /// Computed once for every example when the task is built (TRL's
    /// `precompute_ref_log_probs`).
    Precomputed,
}

impl ReferenceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReferenceKind::BaseWithoutHooks => "base-without-hooks",
            ReferenceKind::FrozenCopy => "frozen-copy",
            ReferenceKind::Precomputed => "precomputed",
        }
    }

    /// The kind named `name` (`--reference`).
    pub fn parse(name: &str) -> Result<Self> {
        [
            ReferenceKind::BaseWithoutHooks,
            ReferenceKind::FrozenCopy,
            ReferenceKind::Precomputed,
        ]
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| Error::Invalid {
            op: "--reference",
            detail: format!(
                "unknown reference {name:?}; one of base-without-hooks, frozen-copy, precomputed"
            ),
        })
    }
}

/// The preference task's options: the objective's (TRL's names, in
/// [`PreferenceOptions`]) and where the reference comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceTrainOptions {
    /// `loss_type`, `beta`, `label_smoothing`, `simpo_gamma`, `cpo_alpha`, `desirable_weight`,
    /// `undesirable_weight`.
    pub objective: PreferenceOptions,
    /// `None`: the base without hooks when the method leaves the base frozen, else a frozen copy.
    /// (TRL's `precompute_ref_log_probs = true` is `Some(Precomputed)`.)
    pub reference: Option<ReferenceKind>,
    /// TRL's `disable_dropout` (default true): the policy runs without dropout while training,
    /// so at the first step it computes exactly the reference's log-probabilities.
    pub disable_dropout: bool,
    /// TRL's `max_length`: tokens per sequence at most (prompt and response); `None`: the model's.
    pub max_length: Option<usize>,
}

impl Default for PreferenceTrainOptions {
    fn default() -> Self {
        Self {
            objective: PreferenceOptions::default(),
            reference: None,
            disable_dropout: true,
            max_length: None,
        }
    }
}

/// A preference task's data: pairs for every objective, or unpaired training examples for KTO.
/// Validation and test are pairs (preference accuracy needs them).
#[derive(Debug, Clone, Default)]
pub struct PreferenceData {
    pub train: Vec<PreferencePair>,
    /// KTO's training examples, when given unpaired (else KTO unpairs `train`).
    pub train_unpaired: Vec<KtoExample>,
    pub validation: Vec<PreferencePair>,
    pub test: Vec<PreferencePair>,
}

/// One encoded response: `prompt + " " + response` and the end token, prompt masked.
#[derive(Debug, Clone)]
struct Seq {
    ids: Vec<u32>,
    labels: Vec<i64>,
    /// log π_ref of the response, when precomputed.
    ref_logp: Option<f64>,
}

#[derive(Debug, Clone)]
struct PairItem {
    chosen: Seq,
    rejected: Seq,
    /// KTO only: this pair's prompt with the previous pair's chosen response (the KL sample of
    /// both its unpaired rows).
    kl: Option<Seq>,
}

#[derive(Debug, Clone)]
struct UnpairedItem {
    seq: Seq,
    label: bool,
    /// The prompt with the previous example's completion.
    kl: Seq,
}

enum Reference<F: Float> {
    None,
    BaseWithoutHooks,
    FrozenCopy(Box<ParamStore<F>>),
    Precomputed,
}

/// Preference tuning of a causal LM on pairs (or KTO's unpaired examples): a [`TrainTask`].
pub struct PreferenceTask<F: Float> {
    pub model: Transformer,
    pub tok: Tokenizer,
    pub objective: Objective,
    pub options: PreferenceTrainOptions,
    pub max_len: usize,
    train: Vec<PairItem>,
    train_unpaired: Vec<UnpairedItem>,
    validation: Vec<PairItem>,
    test: Vec<PairItem>,
    reference: Reference<F>,
}

/// Encodes `prompt + " " + response` as a generation example (`what` names it in errors).
fn encode_seq(
    tok: &Tokenizer,
    prompt: &str,
    response: &str,
    max_len: usize,
    what: &str,
) -> Result<Seq> {
    let example = Example::Generation {
        prompt: prompt.to_string(),
        response: response.to_string(),
    };
    let enc = encode_memo(tok, &example, &[], max_len).map_err(|e| {
        let detail = match e {
            Error::Invalid { detail, .. } | Error::Shape { detail, .. } => detail,
            other => other.to_string(),
        };
        Error::Invalid {
            op: "preference data",
            detail: format!("{what}: {detail}"),
        }
    })?;
    let Target::Lm(labels) = enc.target else {
        return invalid(
            "preference data",
            format!("{what}: not a generation encoding"),
        );
    };
    Ok(Seq {
        ids: enc.ids,
        labels,
        ref_logp: None,
    })
}

fn encode_pairs(
    tok: &Tokenizer,
    pairs: &[PreferencePair],
    max_len: usize,
    split: &str,
    kl: bool,
) -> Result<Vec<PairItem>> {
    let n = pairs.len();
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let what = |r: &str| format!("{split} pair {} (1-based), {r}", i + 1);
            Ok(PairItem {
                chosen: encode_seq(tok, &p.prompt, &p.chosen, max_len, &what("chosen"))?,
                rejected: encode_seq(tok, &p.prompt, &p.rejected, max_len, &what("rejected"))?,
                kl: if kl {
                    let other = &pairs[(i + n - 1) % n].chosen;
                    Some(encode_seq(
                        tok,
                        &p.prompt,
                        other,
                        max_len,
                        &what("KL sample"),
                    )?)
                } else {
                    None
                },
            })
        })
        .collect()
}

fn encode_unpaired(
    tok: &Tokenizer,
    rows: &[KtoExample],
    max_len: usize,
) -> Result<Vec<UnpairedItem>> {
    let n = rows.len();
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let what = |s: &str| format!("train example {} (1-based), {s}", i + 1);
            let other = &rows[(i + n - 1) % n].completion;
            Ok(UnpairedItem {
                seq: encode_seq(tok, &r.prompt, &r.completion, max_len, &what("completion"))?,
                label: r.label,
                kl: encode_seq(tok, &r.prompt, other, max_len, &what("KL sample"))?,
            })
        })
        .collect()
}

/// The policy's and the reference's log-probabilities of a batch of pairs, and the objective.
struct PairBatch {
    out: PreferenceLoss,
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    ref_chosen: Vec<f64>,
    ref_rejected: Vec<f64>,
}

impl PairBatch {
    /// β (log π − log π_ref) of each chosen and each rejected response.
    fn log_ratio_rewards(&self, beta: f64) -> (Vec<f64>, Vec<f64>) {
        let r = |p: &[f64], q: &[f64]| -> Vec<f64> {
            p.iter().zip(q).map(|(p, q)| beta * (p - q)).collect()
        };
        (
            r(&self.chosen, &self.ref_chosen),
            r(&self.rejected, &self.ref_rejected),
        )
    }
}

impl<F: Float> PreferenceTask<F> {
    /// Binds preference data to a causal LM. `store` holds the model with the fine-tuning method
    /// already applied, and `method_params` are the parameters the method added
    /// ([`crate::peft::Method::params`]): a trainable parameter outside them is a base weight the
    /// method trains, and then the reference cannot be the base without hooks.
    pub fn new(
        model: Transformer,
        store: &ParamStore<F>,
        method_params: &[ParamId],
        tok: Tokenizer,
        data: PreferenceData,
        options: PreferenceTrainOptions,
    ) -> Result<Self> {
        let objective = options.objective.objective()?;
        if !model.config.causal {
            return invalid(
                "preference",
                "preference tuning scores responses with a causal LM; this base is an encoder",
            );
        }
        let max_len = match options.max_length {
            None => model.config.max_len,
            Some(m) if (2..=model.config.max_len).contains(&m) => m,
            Some(m) => {
                let most = model.config.max_len;
                return invalid(
                    "--max-length",
                    format!(
                        "{m} tokens asked for; the model takes at most {most}, a pair 2 or more"
                    ),
                );
            }
        };
        let unpaired = objective.unpaired();
        let train_unpaired = if unpaired {
            let rows: Vec<KtoExample> = if data.train_unpaired.is_empty() {
                data.train.iter().flat_map(|p| p.unpaired()).collect()
            } else {
                data.train_unpaired.clone()
            };
            if rows.is_empty() {
                return invalid("preference", "no training examples");
            }
            encode_unpaired(&tok, &rows, max_len)?
        } else {
            if data.train.is_empty() {
                return invalid("preference", "no training pairs");
            }
            Vec::new()
        };
        let train = if unpaired {
            Vec::new()
        } else {
            encode_pairs(&tok, &data.train, max_len, "train", false)?
        };
        let validation = encode_pairs(&tok, &data.validation, max_len, "validation", unpaired)?;
        let test = encode_pairs(&tok, &data.test, max_len, "test", unpaired)?;
        let added: HashSet<ParamId> = method_params.iter().copied().collect();
        let base_trained: Vec<&str> = store
            .ids()
            .filter(|&id| store.is_trainable(id) && !added.contains(&id))
            .map(|id| store.name(id))
            .collect();
        // ANCHOR: reference_kind
        let kind = match options.reference {
            Some(k) => k,
            None if base_trained.is_empty() => ReferenceKind::BaseWithoutHooks,
            // SimPO and ORPO read the reference only for the evaluation's log-probability changes:
            // numbers, not a second copy of the weights.
            None if !objective.needs_reference() => ReferenceKind::Precomputed,
            None => ReferenceKind::FrozenCopy,
        };
        // ANCHOR_END: reference_kind
        if kind == ReferenceKind::BaseWithoutHooks && !base_trained.is_empty() {
            return invalid(
                "--reference",
                format!(
                    "the method trains {} base weight(s) ({}...): the base without hooks would move \
                     with the policy; use frozen-copy or precomputed",
                    base_trained.len(),
                    base_trained[0]
                ),
            );
        }
        let mut task = Self {
            model,
            tok,
            objective,
            options,
            max_len,
            train,
            train_unpaired,
            validation,
            test,
            reference: Reference::None,
        };
        // Even the reference-free objectives keep a reference, for the log-probability changes
        // and the KL of the evaluation.
        let reference = match kind {
            ReferenceKind::BaseWithoutHooks => Reference::BaseWithoutHooks,
            ReferenceKind::FrozenCopy => Reference::FrozenCopy(Box::new(store.clone())),
            ReferenceKind::Precomputed => {
                task.precompute(store)?;
                Reference::Precomputed
            }
        };
        task.reference = reference;
        Ok(task)
    }

    /// Where the reference comes from.
    pub fn reference_kind(&self) -> Option<ReferenceKind> {
        match self.reference {
            Reference::None => None,
            Reference::BaseWithoutHooks => Some(ReferenceKind::BaseWithoutHooks),
            Reference::FrozenCopy(_) => Some(ReferenceKind::FrozenCopy),
            Reference::Precomputed => Some(ReferenceKind::Precomputed),
        }
    }

    /// Bytes the reference holds beyond the policy: 0 for the base without hooks, the copy's
    /// weights for a frozen copy, the stored log-probabilities when precomputed. For the memory
    /// ledger beside [`crate::train::trainer::Memory`] (which counts the policy's store).
    pub fn reference_bytes(&self) -> usize {
        match &self.reference {
            Reference::None | Reference::BaseWithoutHooks => 0,
            Reference::FrozenCopy(copy) => copy.bytes(),
            Reference::Precomputed => {
                let seqs = self.all_seqs().len();
                seqs * std::mem::size_of::<f64>()
            }
        }
    }

    /// Whether training reads the reference: the objective needs it (SimPO and ORPO read it
    /// only in evaluation, so their training sequences need no reference log-probability).
    fn train_reads_reference(&self) -> bool {
        self.objective.needs_reference()
    }

    /// Every sequence whose reference log-probability is read: the evaluation splits', and the
    /// training ones' when training reads the reference.
    fn all_seqs(&self) -> Vec<&Seq> {
        let mut out = Vec::new();
        let train: &[PairItem] = if self.train_reads_reference() {
            &self.train
        } else {
            &[]
        };
        for p in train.iter().chain(&self.validation).chain(&self.test) {
            out.push(&p.chosen);
            out.push(&p.rejected);
            out.extend(p.kl.as_ref());
        }
        if self.train_reads_reference() {
            for u in &self.train_unpaired {
                out.push(&u.seq);
                out.push(&u.kl);
            }
        }
        out
    }

    /// Fills the `ref_logp` of every sequence [`Self::all_seqs`] lists with the store's
    /// log-probability, without hooks.
    fn precompute(&mut self, store: &ParamStore<F>) -> Result<()> {
        const CHUNK: usize = 16;
        let values = {
            let seqs = self.all_seqs();
            let mut values = Vec::with_capacity(seqs.len());
            for chunk in seqs.chunks(CHUNK) {
                values.extend(self.logps_values(store, &NoHooks, chunk)?);
            }
            values
        };
        let mut it = values.into_iter();
        let mut set = |s: &mut Seq| s.ref_logp = it.next();
        let train_too = self.train_reads_reference();
        let train: &mut [PairItem] = if train_too { &mut self.train } else { &mut [] };
        for p in train
            .iter_mut()
            .chain(self.validation.iter_mut())
            .chain(self.test.iter_mut())
        {
            set(&mut p.chosen);
            set(&mut p.rejected);
            if let Some(k) = p.kl.as_mut() {
                set(k);
            }
        }
        if train_too {
            for u in self.train_unpaired.iter_mut() {
                set(&mut u.seq);
                set(&mut u.kl);
            }
        }
        Ok(())
    }

    fn pad_id(&self) -> u32 {
        self.tok.pad_id().unwrap_or(0)
    }

    /// Runs the model (through `hooks`) on `seqs` as one right-padded batch: the summed
    /// log-probability of each response (n,) and each one's counted tokens.
    fn forward_logps(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        seqs: &[&Seq],
    ) -> Result<(Var, Vec<usize>)> {
        let ids: Vec<Vec<u32>> = seqs.iter().map(|s| s.ids.clone()).collect();
        let labels: Vec<Vec<i64>> = seqs.iter().map(|s| s.labels.clone()).collect();
        let b = pad_with_labels(
            &ids,
            &labels,
            self.pad_id(),
            PadSide::Right,
            Some(self.max_len),
        )?;
        let input = Input::new(b.ids.view())
            .with_mask(b.attention_mask.view())
            .with_positions(b.positions.view());
        let h = self.model.forward(tape, hooks, &input)?;
        let logits = self.model.lm_logits(tape, hooks, h)?;
        let labels = b.labels.as_ref().expect("padded with labels");
        sequence_logps(tape, logits, labels.view(), false)
    }

    /// [`Self::forward_logps`] on an inference tape, as numbers.
    fn logps_values(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        seqs: &[&Seq],
    ) -> Result<Vec<f64>> {
        let mut t = Tape::inference(store);
        let (v, _) = self.forward_logps(&mut t, hooks, seqs)?;
        Ok(t.value(v).iter().map(|x| x.as_f64()).collect())
    }

    /// The reference's log-probabilities of `seqs`; `store` is the policy's (the base without
    /// hooks runs on it).
    // ANCHOR: reference_logps
    fn reference_logps(&self, store: &ParamStore<F>, seqs: &[&Seq]) -> Result<Vec<f64>> {
        match &self.reference {
            Reference::None => invalid("preference", "no reference policy"),
            Reference::BaseWithoutHooks => self.logps_values(store, &NoHooks, seqs),
            Reference::FrozenCopy(copy) => self.logps_values(copy, &NoHooks, seqs),
            Reference::Precomputed => seqs
                .iter()
                .map(|s| {
                    s.ref_logp.ok_or_else(|| Error::Invalid {
                        op: "preference",
                        detail: "a reference log-probability was not precomputed".into(),
                    })
                })
                .collect(),
        }
    }
    // ANCHOR_END: reference_logps

    /// The objective on a batch of pairs, on `tape` (recording or not). Without `all_reference`
    /// the reference runs only if the objective reads it (training a reference-free objective
    /// does not pay for it; the evaluation always measures the log-probabilities' change).
    fn pair_batch(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        pairs: &[&PairItem],
        all_reference: bool,
    ) -> Result<PairBatch> {
        let b = pairs.len();
        let seqs: Vec<&Seq> = pairs
            .iter()
            .map(|p| &p.chosen)
            .chain(pairs.iter().map(|p| &p.rejected))
            .collect();
        let (logps, counts) = self.forward_logps(tape, hooks, &seqs)?;
        let refs = if all_reference || self.objective.needs_reference() {
            self.reference_logps(tape.store(), &seqs)?
        } else {
            vec![f64::NAN; 2 * b]
        };
        let chosen = tape.slice(logps, 0, 0, b)?;
        let rejected = tape.slice(logps, 0, b, 2 * b)?;
        let chosen_nll = if self.objective.needs_nll() {
            // The mean NLL over the chosen responses' tokens (TRL's cross-entropy on them).
            let total: usize = counts[..b].iter().sum();
            let s = tape.sum_all(chosen)?;
            Some(tape.scale(s, -1.0 / total.max(1) as f64)?)
        } else {
            None
        };
        let chosen_v: Vec<f64> = tape.value(chosen).iter().map(|x| x.as_f64()).collect();
        let rejected_v: Vec<f64> = tape.value(rejected).iter().map(|x| x.as_f64()).collect();
        let (ref_chosen, ref_rejected) = (refs[..b].to_vec(), refs[b..].to_vec());
        let out = if self.objective.unpaired() {
            // KTO on the pairs unpaired: chosen desirable, rejected undesirable, each pair's KL
            // sample counted for both of its rows.
            let kl_seqs: Vec<&Seq> = pairs
                .iter()
                .map(|p| {
                    p.kl.as_ref().ok_or_else(|| Error::Invalid {
                        op: "preference",
                        detail: "KTO pairs need their KL samples".into(),
                    })
                })
                .collect::<Result<_>>()?;
            let kl = self.logps_values(tape.store(), hooks, &kl_seqs)?;
            let ref_kl = self.reference_logps(tape.store(), &kl_seqs)?;
            let kl2: Vec<f64> = kl.iter().chain(&kl).copied().collect();
            let ref_kl2: Vec<f64> = ref_kl.iter().chain(&ref_kl).copied().collect();
            let labels: Vec<bool> = (0..2 * b).map(|i| i < b).collect();
            self.objective.unpaired_loss(
                tape,
                &KtoInputs {
                    logps,
                    labels: &labels,
                    ref_logps: &refs,
                    kl_logps: &kl2,
                    ref_kl_logps: &ref_kl2,
                },
            )?
        } else {
            let needs_ref = self.objective.needs_reference();
            self.objective.pair_loss(
                tape,
                &PairInputs {
                    chosen,
                    rejected,
                    chosen_tokens: &counts[..b],
                    rejected_tokens: &counts[b..],
                    ref_chosen: needs_ref.then_some(&ref_chosen[..]),
                    ref_rejected: needs_ref.then_some(&ref_rejected[..]),
                    chosen_nll,
                },
            )?
        };
        Ok(PairBatch {
            out,
            chosen: chosen_v,
            rejected: rejected_v,
            ref_chosen,
            ref_rejected,
        })
    }

    /// KTO's loss on a batch of unpaired training examples.
    fn unpaired_batch(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        rows: &[&UnpairedItem],
    ) -> Result<PreferenceLoss> {
        let seqs: Vec<&Seq> = rows.iter().map(|r| &r.seq).collect();
        let kl_seqs: Vec<&Seq> = rows.iter().map(|r| &r.kl).collect();
        let (logps, _) = self.forward_logps(tape, hooks, &seqs)?;
        let refs = self.reference_logps(tape.store(), &seqs)?;
        // The KL samples through the policy without gradient (TRL: `torch.no_grad()`), with the
        // tape's dropout setting.
        let kl = {
            let mut t = Tape::inference(tape.store());
            t.set_train(tape.is_train());
            let (v, _) = self.forward_logps(&mut t, hooks, &kl_seqs)?;
            t.value(v).iter().map(|x| x.as_f64()).collect::<Vec<_>>()
        };
        let ref_kl = self.reference_logps(tape.store(), &kl_seqs)?;
        let labels: Vec<bool> = rows.iter().map(|r| r.label).collect();
        self.objective.unpaired_loss(
            tape,
            &KtoInputs {
                logps,
                labels: &labels,
                ref_logps: &refs,
                kl_logps: &kl,
                ref_kl_logps: &ref_kl,
            },
        )
    }

    fn split(&self, split: Split) -> &[PairItem] {
        match split {
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    /// The implicit rewards and log-probabilities of the pairs of a split, one row per pair:
    /// (reward margin, log π chosen, log π rejected, log π_ref chosen, log π_ref rejected).
    /// For the interview demos and the pitfalls that look at single pairs.
    pub fn pair_rows(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        batch_size: usize,
    ) -> Result<Vec<[f64; 5]>> {
        let mut rows = Vec::new();
        let items: Vec<&PairItem> = self.split(split).iter().collect();
        for chunk in items.chunks(batch_size.max(1)) {
            let mut t = Tape::inference(store);
            let pb = self.pair_batch(&mut t, hooks, chunk, true)?;
            let margins: Vec<f64> = if self.objective.unpaired() {
                let (c, r) = pb.log_ratio_rewards(self.objective.beta());
                c.iter().zip(&r).map(|(c, r)| c - r).collect()
            } else {
                pb.out.stats.margins()
            };
            for (k, m) in margins.iter().enumerate() {
                rows.push([
                    *m,
                    pb.chosen[k],
                    pb.rejected[k],
                    pb.ref_chosen[k],
                    pb.ref_rejected[k],
                ]);
            }
        }
        Ok(rows)
    }
}

impl<F: Float> TrainTask<F> for PreferenceTask<F> {
    fn train_len(&self) -> usize {
        if self.objective.unpaired() {
            self.train_unpaired.len()
        } else {
            self.train.len()
        }
    }

    /// The objective's mean over the micro-batch's pairs (or KTO's examples): its loss terms
    /// are pairs (examples).
    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        if self.options.disable_dropout {
            tape.set_train(false);
        }
        if self.objective.unpaired() {
            let rows: Vec<&UnpairedItem> = batch
                .indices
                .iter()
                .map(|&i| &self.train_unpaired[i])
                .collect();
            let out = self.unpaired_batch(tape, hooks, &rows)?;
            return Ok((out.loss, rows.len()));
        }
        let pairs: Vec<&PairItem> = batch.indices.iter().map(|&i| &self.train[i]).collect();
        let pb = self.pair_batch(tape, hooks, &pairs, false)?;
        Ok((pb.out.loss, pairs.len()))
    }

    fn tokens(&self, batch: &MicroBatch<'_>) -> Option<usize> {
        let len = |s: &Seq| s.ids.len().min(self.max_len);
        Some(if self.objective.unpaired() {
            batch
                .indices
                .iter()
                .map(|&i| len(&self.train_unpaired[i].seq))
                .sum()
        } else {
            batch
                .indices
                .iter()
                .map(|&i| len(&self.train[i].chosen) + len(&self.train[i].rejected))
                .sum()
        })
    }

    fn model(&self) -> Option<&Transformer> {
        Some(&self.model)
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        Some(METRICS.to_vec())
    }

    fn reference_bytes(&self) -> usize {
        PreferenceTask::reference_bytes(self)
    }

    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        let items: Vec<&PairItem> = eval_subset(self.split(split), limit).iter().collect();
        let mut m = Metrics::new();
        if items.is_empty() {
            return Ok(m);
        }
        let beta = self.objective.beta();
        let (mut loss_sum, mut margins, mut rc, mut rr) = (0.0, Vec::new(), Vec::new(), Vec::new());
        let (mut lc, mut lr, mut refc, mut refr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for chunk in items.chunks(batch_size.max(1)) {
            let mut t = Tape::inference(store);
            let pb = self.pair_batch(&mut t, hooks, chunk, true)?;
            loss_sum += t.scalar(pb.out.loss)?.as_f64() * chunk.len() as f64;
            if self.objective.unpaired() {
                // KTO's rewards are per row; pair them up again (chosen rows, rejected rows).
                let (c, r) = pb.log_ratio_rewards(beta);
                margins.extend(c.iter().zip(&r).map(|(c, r)| c - r));
                rc.extend(c);
                rr.extend(r);
            } else {
                margins.extend(pb.out.stats.margins());
                rc.extend(pb.out.stats.rewards_chosen.iter().copied());
                rr.extend(pb.out.stats.rewards_rejected.iter().copied());
            }
            lc.extend(pb.chosen);
            lr.extend(pb.rejected);
            refc.extend(pb.ref_chosen);
            refr.extend(pb.ref_rejected);
        }
        let n = items.len() as f64;
        let accuracy = margins.iter().filter(|&&d| d > 0.0).count() as f64 / n;
        let kl: Vec<f64> = lc.iter().zip(&refc).map(|(p, r)| p - r).collect();
        let d_rej: Vec<f64> = lr.iter().zip(&refr).map(|(p, r)| p - r).collect();
        for (k, v) in [
            ("loss", loss_sum / n),
            ("score", accuracy),
            ("accuracy", accuracy),
            ("margin", mean(&margins)),
            ("reward_chosen", mean(&rc)),
            ("reward_rejected", mean(&rr)),
            ("logps_chosen", mean(&lc)),
            ("logps_rejected", mean(&lr)),
            ("ref_logps_chosen", mean(&refc)),
            ("ref_logps_rejected", mean(&refr)),
            ("logps_chosen_change", mean(&kl)),
            ("logps_rejected_change", mean(&d_rej)),
            ("kl", mean(&kl)),
        ] {
            m.insert(k.to_string(), v);
        }
        Ok(m)
    }
}

/// The metrics [`PreferenceTask`]'s evaluation reports.
pub const METRICS: [&str; 13] = [
    "loss",
    "score",
    "accuracy",
    "margin",
    "reward_chosen",
    "reward_rejected",
    "logps_chosen",
    "logps_rejected",
    "ref_logps_chosen",
    "ref_logps_rejected",
    "logps_chosen_change",
    "logps_rejected_change",
    "kl",
];
