//! Evaluation metrics for the six tasks, each following the reference implementation people
//! compare against, so numbers from the lab mean what they mean elsewhere.
//!
//! | task | metric | reference semantics |
//! |---|---|---|
//! | classification | [`accuracy`], [`macro_f1`] | scikit-learn `accuracy_score`, `f1_score(average="macro")` |
//! | NER | [`entity_f1`] over BIO tags | seqeval's default mode, micro-averaged |
//! | extractive QA | [`exact_match`], [`token_f1`], [`squad`] | the SQuAD evaluation script |
//! | summarization, dialogue | [`rouge_l`], [`mean_rouge_l`] | ROUGE-L F-measure (LCS) |
//! | language modelling | [`perplexity`], [`perplexity_from_sum`] | exp of the mean token loss |
//! | code-like generation | [`execution_accuracy`] | the answer computes the same value |
//!
//! Conventions: corpus-level functions take `(predictions, references)` in that order (as
//! Hugging Face `evaluate` does), return fractions in [0, 1] (not percentages), give an error when
//! the two lists differ in length, and give 0 for empty input (nothing was right).

use crate::data::tasks::same_answer;
use crate::data::world::World;
use crate::error::{invalid, shape_err, Result};
use std::collections::{HashMap, HashSet};

fn check_lengths(op: &'static str, predictions: usize, references: usize) -> Result<()> {
    if predictions != references {
        return shape_err(
            op,
            format!("{predictions} predictions but {references} references"),
        );
    }
    Ok(())
}

/// Mean over pairs of `score`, 0 for no pairs.
fn mean_of<S: AsRef<str>>(
    op: &'static str,
    predictions: &[S],
    references: &[S],
    score: impl Fn(&str, &str) -> f64,
) -> Result<f64> {
    check_lengths(op, predictions.len(), references.len())?;
    if predictions.is_empty() {
        return Ok(0.0);
    }
    let total: f64 = predictions
        .iter()
        .zip(references)
        .map(|(p, r)| score(p.as_ref(), r.as_ref()))
        .sum();
    Ok(total / predictions.len() as f64)
}

// ---------------------------------------------------------------------------------------------
// Classification

/// The fraction of predictions equal to their reference label.
pub fn accuracy(predictions: &[usize], references: &[usize]) -> Result<f64> {
    check_lengths("accuracy", predictions.len(), references.len())?;
    if predictions.is_empty() {
        return Ok(0.0);
    }
    let right = predictions
        .iter()
        .zip(references)
        .filter(|(p, r)| p == r)
        .count();
    Ok(right as f64 / predictions.len() as f64)
}

/// Macro-averaged F1: the unweighted mean over classes of F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c),
/// so a rare class counts as much as a common one. As scikit-learn does by default, the classes
/// are those that occur in the references or the predictions, and a class with TP = 0 scores 0.
pub fn macro_f1(predictions: &[usize], references: &[usize]) -> Result<f64> {
    check_lengths("macro_f1", predictions.len(), references.len())?;
    // class → (TP, FP, FN)
    let mut counts: HashMap<usize, (usize, usize, usize)> = HashMap::new();
    for (&p, &r) in predictions.iter().zip(references) {
        if p == r {
            counts.entry(p).or_default().0 += 1;
        } else {
            counts.entry(p).or_default().1 += 1;
            counts.entry(r).or_default().2 += 1;
        }
    }
    if counts.is_empty() {
        return Ok(0.0);
    }
    let sum: f64 = counts
        .values()
        .map(|&(tp, fp, fn_)| {
            if tp == 0 {
                0.0
            } else {
                2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
            }
        })
        .sum();
    Ok(sum / counts.len() as f64)
}

// ---------------------------------------------------------------------------------------------
// NER: entity-level F1 over BIO tags

/// An entity: its type and the token positions `start..end` (end exclusive; seqeval prints the
/// end inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// Splits a tag into its prefix letter and its type as seqeval does: "B-PER" → ('B', "PER"),
/// "O" → ('O', "_"), a bare "B" → ('B', "_"). An empty tag is read as "O".
fn split_tag(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let Some(prefix) = chars.next() else {
        return ('O', "_");
    };
    let rest = chars.as_str();
    let kind = rest.split_once('-').map_or(rest, |(_, kind)| kind);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

/// seqeval's `end_of_chunk`: whether the entity running at the previous tag ends before this one.
fn end_of_chunk(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_kind != kind)
}

/// seqeval's `start_of_chunk`: whether an entity starts at this tag.
fn start_of_chunk(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_kind != kind)
}

/// The entities in one tag sequence, with seqeval's default (lenient) rules:
///
/// - `B-X` starts an entity of type X, following `I-X` extend it, anything else ends it;
/// - `I-X` with no entity running (after `O`, at the start) *starts* one, as if it were `B-X`;
/// - `I-X` after an entity of another type ends that one and starts an X entity.
///
/// E/S tags (IOBES) are read the same way seqeval reads them. Strict mode (conlleval's
/// `-r` or seqeval's `mode="strict"`, which drops an entity that begins with I-) is not offered.
pub fn entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    let mut found = Vec::new();
    let (mut prev, mut prev_kind) = ('O', "");
    let mut begin = 0;
    // A trailing "O" closes an entity that runs to the end.
    let tail = std::iter::once("O");
    for (i, tag) in tags.iter().map(AsRef::as_ref).chain(tail).enumerate() {
        let (t, kind) = split_tag(tag);
        if end_of_chunk(prev, t, prev_kind, kind) {
            found.push(Entity {
                kind: prev_kind.to_string(),
                start: begin,
                end: i,
            });
        }
        if start_of_chunk(prev, t, prev_kind, kind) {
            begin = i;
        }
        (prev, prev_kind) = (t, kind);
    }
    found
}

/// Entity-level precision, recall and F1, micro-averaged over entity types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityScores {
    /// correct / predicted (0 when nothing was predicted).
    pub precision: f64,
    /// correct / reference (0 when the references hold no entity).
    pub recall: f64,
    /// 2·P·R / (P + R) (0 when both are 0).
    pub f1: f64,
    pub n_predicted: usize,
    pub n_reference: usize,
    pub n_correct: usize,
}

/// Entity-level scores over sentences of BIO tags, as seqeval's `f1_score` (default mode,
/// micro average): a predicted entity is correct only if an entity of the same type spans exactly
/// the same tokens in the reference; a partly right span or a wrong type earns nothing. Entities
/// are found by [`entities`]. When neither side has an entity every score is 0, as in seqeval.
/// Sentences must pair up with equal lengths.
pub fn entity_f1<S: AsRef<str>>(
    predictions: &[Vec<S>],
    references: &[Vec<S>],
) -> Result<EntityScores> {
    check_lengths("entity_f1", predictions.len(), references.len())?;
    for (i, (p, r)) in predictions.iter().zip(references).enumerate() {
        if p.len() != r.len() {
            return shape_err(
                "entity_f1",
                format!(
                    "sentence {i}: {} predicted tags but {} reference tags",
                    p.len(),
                    r.len()
                ),
            );
        }
    }
    // As seqeval: sentences joined into one sequence with an "O" after each, so no entity
    // crosses a sentence boundary and positions are offsets into the joined sequence.
    let joined = |sentences: &[Vec<S>]| -> HashSet<Entity> {
        let flat: Vec<&str> = sentences
            .iter()
            .flat_map(|s| s.iter().map(AsRef::as_ref).chain(std::iter::once("O")))
            .collect();
        entities(&flat).into_iter().collect()
    };
    let (pred, refs) = (joined(predictions), joined(references));
    let n_correct = pred.intersection(&refs).count();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(n_correct, pred.len());
    let recall = ratio(n_correct, refs.len());
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Ok(EntityScores {
        precision,
        recall,
        f1,
        n_predicted: pred.len(),
        n_reference: refs.len(),
        n_correct,
    })
}

// ---------------------------------------------------------------------------------------------
// Extractive QA: SQuAD exact match and token F1

/// SQuAD's `normalize_answer`: lowercase, drop ASCII punctuation, drop the words "a", "an" and
/// "the", and collapse whitespace to single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // re.sub(r"\b(a|an|the)\b", " ", text): a maximal run of word characters that is an article.
    let mut out = String::with_capacity(lower.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in lower.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the two answers are equal after [`normalize_answer`].
pub fn exact_match(prediction: &str, reference: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(reference)
}

/// SQuAD token F1: the overlap of the two normalised answers as bags of words, with precision
/// = common / predicted tokens and recall = common / reference tokens. If either side is empty
/// after normalisation the score is 1 when both are and 0 otherwise (the SQuAD 2.0 rule).
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (normalize_answer(prediction), normalize_answer(reference));
    let p: Vec<&str> = p.split_whitespace().collect();
    let r: Vec<&str> = r.split_whitespace().collect();
    if p.is_empty() || r.is_empty() {
        return if p.is_empty() && r.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut bag: HashMap<&str, usize> = HashMap::new();
    for w in &r {
        *bag.entry(w).or_default() += 1;
    }
    let mut common = 0;
    for w in &p {
        if let Some(n) = bag.get_mut(w).filter(|n| **n > 0) {
            *n -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Corpus-level SQuAD scores, as fractions (the official script prints them times 100).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquadScores {
    pub exact_match: f64,
    pub f1: f64,
}

/// Mean [`exact_match`] and mean [`token_f1`] over (prediction, reference) pairs.
pub fn squad<S: AsRef<str>>(predictions: &[S], references: &[S]) -> Result<SquadScores> {
    let em = |p: &str, r: &str| f64::from(u8::from(exact_match(p, r)));
    Ok(SquadScores {
        exact_match: mean_of("squad", predictions, references, em)?,
        f1: mean_of("squad", predictions, references, token_f1)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Summarization and dialogue: ROUGE-L

/// Length of the longest common subsequence of two token lists (dynamic programming, one row).
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0; // row[j − 1] of the previous row
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

/// ROUGE-L F-measure over whitespace tokens: with L the longest common subsequence of the two
/// token lists, P = L / |prediction|, R = L / |reference| and F = 2·P·R / (P + R); 0 if either
/// side is empty. Tokens are compared exactly (the `rouge_score` package also lowercases and
/// drops punctuation before comparing, so it can score higher on the same texts).
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let p: Vec<&str> = prediction.split_whitespace().collect();
    let r: Vec<&str> = reference.split_whitespace().collect();
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    let l = lcs(&p, &r);
    if l == 0 {
        return 0.0;
    }
    let precision = l as f64 / p.len() as f64;
    let recall = l as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Mean [`rouge_l`] over (prediction, reference) pairs.
pub fn mean_rouge_l<S: AsRef<str>>(predictions: &[S], references: &[S]) -> Result<f64> {
    mean_of("rouge_l", predictions, references, rouge_l)
}

// ---------------------------------------------------------------------------------------------
// Language modelling: perplexity

/// Perplexity exp(L) from a mean per-token cross-entropy L in nats: the size of a uniform choice
/// the model is as unsure as. A uniform guess over V tokens has L = ln V and perplexity V.
pub fn perplexity(mean_loss: f64) -> f64 {
    mean_loss.exp()
}

/// Perplexity from a summed token loss and the number of tokens it sums over (see
/// [`causal_lm_loss_sum`](crate::loss::causal_lm_loss_sum)): exp(sum / count).
pub fn perplexity_from_sum(sum: f64, count: usize) -> Result<f64> {
    if count == 0 {
        return invalid("perplexity", "no tokens to average over");
    }
    Ok(perplexity(sum / count as f64))
}

// ---------------------------------------------------------------------------------------------
// Code-like generation: execution accuracy

/// The fraction of predicted programs that compute the same value as their reference in `world`
/// ([`same_answer`]): `age(Ann Lee) + 1` and `1 + age(Ann Lee)` both count, a program that does
/// not run counts as wrong, and so does any answer to a reference that does not run.
pub fn execution_accuracy<S: AsRef<str>>(
    predictions: &[S],
    references: &[S],
    world: &World,
) -> Result<f64> {
    mean_of("execution_accuracy", predictions, references, |p, r| {
        f64::from(u8::from(same_answer(r, p, world)))
    })
}
