//! Pitfall: padding handled wrongly. Batching sequences of different lengths pads the short
//! ones; the model must then be told which tokens are real (the attention mask), where each
//! sequence starts (position ids) and — for a decoder that generates — where its last real
//! token is. Each mistake below is measured against every sequence run alone (unpadded):
//!
//! - right padding, reading each row's last real token: correct (causal attention never lets a
//!   real token see the pads after it);
//! - right padding, reading the last column (batched generation done naively, or last-token
//!   pooling without the mask): the short rows read a pad;
//! - left padding without the mask: real tokens attend to the pads;
//! - left padding with the mask but no position ids: every real token is shifted in position;
//! - left padding with the mask and position ids: correct — the fix, and what batched
//!   generation uses.
//!
//! Then greedy generation of a batch, naive (right-padded, new tokens appended after the pads)
//! versus fixed (left-padded with mask and positions), against each prompt generated alone.

use crate::data::batch::{pad, PadSide};
use crate::error::Result;
use crate::lab::evidence::{table, Claim, Evidence, Mode};
use crate::lab::finetune::{load_base, Base};
use crate::lab::runs::BASE;
use crate::nn::generate::{generate, GenerateOptions};
use crate::nn::{Input, NoHooks};
use crate::Tape;
use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

/// One way of batching, compared with the unpadded outputs.
#[derive(Debug, Clone, Serialize)]
pub struct PadCase {
    pub label: String,
    /// The largest difference of any next-token logit from the unpadded run.
    pub max_logit_diff: f64,
    /// Rows whose predicted next token differs from the unpadded run.
    pub rows_wrong: usize,
    /// Whether this is one of the correct ways.
    pub correct_way: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Padding {
    pub lengths: Vec<usize>,
    pub cases: Vec<PadCase>,
    pub new_tokens: usize,
    /// Rows whose greedy continuation differs from generating alone: naive right padding.
    pub gen_rows_wrong_naive: usize,
    /// The same with left padding, mask and positions (`nn::generate`).
    pub gen_rows_wrong_fixed: usize,
}

/// Next-token logits (B, V) read at column `read[b]` of each row.
fn logits_at(
    base: &Base,
    ids: ArrayView2<'_, usize>,
    mask: Option<ArrayView2<'_, bool>>,
    positions: Option<ArrayView2<'_, usize>>,
    read: &[usize],
) -> Result<Array2<f32>> {
    let mut tape = Tape::inference(&base.store);
    let mut input = Input::new(ids);
    input.mask = mask;
    input.positions = positions;
    let h = base.model.forward(&mut tape, &NoHooks, &input)?;
    let logits = base.model.lm_logits(&mut tape, &NoHooks, h)?;
    let v = tape.value(logits);
    let vocab = v.shape()[2];
    Ok(Array2::from_shape_fn((read.len(), vocab), |(b, k)| {
        v[[b, read[b], k]]
    }))
}

fn argmax(row: ndarray::ArrayView1<'_, f32>) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

fn compare(label: &str, got: &Array2<f32>, want: &Array2<f32>, correct_way: bool) -> PadCase {
    let max_logit_diff = (got - want)
        .iter()
        .fold(0.0f64, |m, &d| m.max((d as f64).abs()));
    let rows_wrong = got
        .axis_iter(Axis(0))
        .zip(want.axis_iter(Axis(0)))
        .filter(|(g, w)| argmax(*g) != argmax(*w))
        .count();
    PadCase {
        label: label.into(),
        max_logit_diff,
        rows_wrong,
        correct_way,
    }
}

/// Greedy generation done naively: right-padded rows, new tokens appended after the pads, every
/// row's next token read at the last column, no mask.
fn naive_generate(
    base: &Base,
    prompts: &[Vec<usize>],
    n: usize,
    pad_id: usize,
) -> Result<Vec<Vec<usize>>> {
    let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows: Vec<Vec<usize>> = prompts
        .iter()
        .map(|p| {
            let mut r = p.clone();
            r.resize(t0, pad_id);
            r
        })
        .collect();
    let mut out = vec![Vec::new(); prompts.len()];
    for _ in 0..n {
        let t = rows[0].len();
        let ids = Array2::from_shape_fn((rows.len(), t), |(b, j)| rows[b][j]);
        let l = logits_at(base, ids.view(), None, None, &vec![t - 1; rows.len()])?;
        for (b, row) in l.axis_iter(Axis(0)).enumerate() {
            let next = argmax(row);
            rows[b].push(next);
            out[b].push(next);
        }
    }
    Ok(out)
}

pub fn run(mode: Mode) -> Result<Padding> {
    let base = load_base(BASE)?;
    let pad_id = base.tok.pad_id().unwrap_or(0) as usize;
    let texts = [
        "the film was good",
        "the soup in the old harbour town was cold and the waiter was rude to us",
        "a long and dull story about a king",
        "i loved every minute of the concert in the park",
    ];
    let seqs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| base.tok.encode(t, false))
        .collect::<Result<_>>()?;
    let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let t = *lengths.iter().max().unwrap_or(&1);

    // Reference: each sequence alone.
    let mut want = Array2::zeros((seqs.len(), base.model.config.vocab_size));
    for (b, s) in seqs.iter().enumerate() {
        let ids = Array2::from_shape_fn((1, s.len()), |(_, j)| s[j] as usize);
        let l = logits_at(&base, ids.view(), None, None, &[s.len() - 1])?;
        want.row_mut(b).assign(&l.row(0));
    }

    let right = pad(&seqs, pad_id as u32, PadSide::Right, None)?;
    let left = pad(&seqs, pad_id as u32, PadSide::Left, None)?;
    let last_real: Vec<usize> = lengths.iter().map(|n| n - 1).collect();
    let last_col = vec![t - 1; seqs.len()];
    let (rm, rp) = (right.attention_mask.view(), right.positions.view());
    let (lm, lp) = (left.attention_mask.view(), left.positions.view());
    let cases = vec![
        compare(
            "right pad, mask, read each row's last real token",
            &logits_at(&base, right.ids.view(), Some(rm), Some(rp), &last_real)?,
            &want,
            true,
        ),
        compare(
            "right pad, read the last column (naive)",
            &logits_at(&base, right.ids.view(), Some(rm), Some(rp), &last_col)?,
            &want,
            false,
        ),
        compare(
            "left pad, no mask",
            &logits_at(&base, left.ids.view(), None, None, &last_col)?,
            &want,
            false,
        ),
        compare(
            "left pad, mask, no position ids",
            &logits_at(&base, left.ids.view(), Some(lm), None, &last_col)?,
            &want,
            false,
        ),
        compare(
            "left pad, mask and position ids (the fix)",
            &logits_at(&base, left.ids.view(), Some(lm), Some(lp), &last_col)?,
            &want,
            true,
        ),
    ];

    let new_tokens = mode.pick(6, 16);
    let prompts: Vec<Vec<usize>> = seqs
        .iter()
        .map(|s| s.iter().map(|&x| x as usize).collect())
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        pad: pad_id,
        ..Default::default()
    };
    let mut alone = Vec::new();
    for p in &prompts {
        alone.push(
            generate(
                &base.model,
                &base.store,
                &NoHooks,
                std::slice::from_ref(p),
                &opts,
            )?
            .remove(0),
        );
    }
    let fixed = generate(&base.model, &base.store, &NoHooks, &prompts, &opts)?;
    let naive = naive_generate(&base, &prompts, new_tokens, pad_id)?;
    let differs = |got: &[Vec<usize>]| got.iter().zip(&alone).filter(|(g, a)| g != a).count();
    Ok(Padding {
        lengths,
        cases,
        new_tokens,
        gen_rows_wrong_naive: differs(&naive),
        gen_rows_wrong_fixed: differs(&fixed),
    })
}

impl Padding {
    /// The largest logit difference of the correct ways.
    pub fn fixed_max_diff(&self) -> f64 {
        self.cases
            .iter()
            .filter(|c| c.correct_way)
            .map(|c| c.max_logit_diff)
            .fold(0.0, f64::max)
    }

    /// The smallest logit difference of the wrong ways.
    pub fn wrong_min_diff(&self) -> f64 {
        self.cases
            .iter()
            .filter(|c| !c.correct_way)
            .map(|c| c.max_logit_diff)
            .fold(f64::INFINITY, f64::min)
    }
}

/// Below this a logit difference is float rounding (the padded batch sums in another order).
pub const SAME: f64 = 1e-3;

impl Evidence for Padding {
    fn render(&self) -> String {
        let mut s = format!(
            "gpt-tiny, {} prompts of {:?} tokens; next-token logits of each batching versus each prompt alone\n\n",
            self.lengths.len(),
            self.lengths
        );
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.label.clone(),
                    format!("{:.2e}", c.max_logit_diff),
                    format!("{}/{}", c.rows_wrong, self.lengths.len()),
                ]
            })
            .collect();
        s.push_str(&table(
            &["batching", "max |logit diff|", "next token wrong"],
            &rows,
        ));
        s.push_str(&format!(
            "\ngreedy generation of {} tokens, batch versus alone: rows that differ — naive right padding {}/{}, left padding with mask and positions {}/{}\n",
            self.new_tokens,
            self.gen_rows_wrong_naive,
            self.lengths.len(),
            self.gen_rows_wrong_fixed,
            self.lengths.len()
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let wrong: Vec<&PadCase> = self.cases.iter().filter(|c| !c.correct_way).collect();
        vec![
            Claim::new(
                format!(
                    "every wrong batching changes the outputs (smallest max difference {:.2e})",
                    self.wrong_min_diff()
                ),
                wrong.iter().all(|c| c.max_logit_diff > SAME),
            ),
            Claim::new(
                format!(
                    "with the fix, padded equals unpadded (max difference {:.2e} < {SAME:.0e}, same next tokens)",
                    self.fixed_max_diff()
                ),
                self.fixed_max_diff() < SAME
                    && self.cases.iter().filter(|c| c.correct_way).all(|c| c.rows_wrong == 0),
            ),
            Claim::new(
                "batched generation with left padding, mask and positions gives exactly what each prompt gives alone",
                self.gen_rows_wrong_fixed == 0,
            ),
            Claim::new(
                "naive right-padded batched generation changes some rows' text",
                self.gen_rows_wrong_naive > 0,
            ),
        ]
    }
}
