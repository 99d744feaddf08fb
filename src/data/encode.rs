//! From examples to token ids and per-task targets, ready for batching.
//!
//! | shape | input ids | target |
//! |---|---|---|
//! | classification | the text (with [CLS] … [SEP] for BERT) | the label |
//! | tagging | the words, split into sub-words | the tag on each word's first sub-word, ignore elsewhere |
//! | span | question, separator, context | the first and last token of the answer in the context |
//! | generation | prompt, then response and the end token | the response's tokens; the prompt is masked out |

use super::batch::align_word_labels;
use super::tasks::Example;
use super::tokenizer::{Preset, Tokenizer};
use crate::autodiff::IGNORE_INDEX;
use crate::error::{invalid, Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// What the loss compares the model's output with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Class(usize),
    /// One label per token (tag index or [`IGNORE_INDEX`]).
    Tags(Vec<i64>),
    /// Token indices of the answer's first and last token.
    Span {
        start: usize,
        end: usize,
    },
    /// Per-token labels, unshifted: `labels[t]` is token t itself for response tokens and
    /// [`IGNORE_INDEX`] for the prompt. The causal LM loss shifts them by one.
    Lm(Vec<i64>),
}

/// [`encode`], remembered: the encoding of an example is a function of the tokenizer, the
/// example, the tags and max_len, and tokenizing is slow (a whole task's splits took about a
/// second, and `compare` binds the task anew for every run: 30 runs at `--quick`). Errors are
/// not remembered (they are computed again, for the caller to place). The memory holds at most
/// [`MEMO_EXAMPLES`] encodings and is emptied when full.
pub fn encode_memo(
    tok: &Tokenizer,
    example: &Example,
    tags: &[&str],
    max_len: usize,
) -> Result<Encoded> {
    type Key = (u64, usize, Vec<String>, Example);
    static MEMO: Mutex<Option<HashMap<Key, Encoded>>> = Mutex::new(None);
    let key: Key = (
        tok.fingerprint(),
        max_len,
        tags.iter().map(|t| t.to_string()).collect(),
        example.clone(),
    );
    let lock = || MEMO.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = lock().as_ref().and_then(|m| m.get(&key)) {
        return Ok(e.clone());
    }
    let encoded = encode(tok, example, tags, max_len)?;
    let mut memo = lock();
    let memo = memo.get_or_insert_with(HashMap::new);
    if memo.len() >= MEMO_EXAMPLES {
        memo.clear();
    }
    memo.insert(key, encoded.clone());
    Ok(encoded)
}

/// How many encodings [`encode_memo`] keeps: every split of a few tasks.
pub const MEMO_EXAMPLES: usize = 100_000;

/// One encoded example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub target: Target,
    /// Number of prompt tokens (generation), so a prompt can be cut off for generating.
    pub prompt_len: usize,
}

fn no_special(what: &str) -> Error {
    Error::Invalid {
        op: "encode",
        detail: format!("the tokenizer has no {what} token"),
    }
}

/// Encodes one example; `tags` names the tag set for tagging examples. Sequences longer than
/// `max_len` are an error for spans (the answer could be cut off) and for a prompt that leaves
/// no room for its response, and truncated otherwise.
pub fn encode(
    tok: &Tokenizer,
    example: &Example,
    tags: &[&str],
    max_len: usize,
) -> Result<Encoded> {
    let bert = tok.preset() == Preset::Bert;
    let mut e = match example {
        Example::Classification { text, label } => Encoded {
            ids: tok.encode(text, true)?,
            target: Target::Class(*label),
            prompt_len: 0,
        },
        Example::Tagging {
            tokens,
            tags: word_tags,
        } => {
            let labels: Vec<i64> = word_tags
                .iter()
                .map(|t| {
                    tags.iter()
                        .position(|x| x == t)
                        .map(|i| i as i64)
                        .ok_or_else(|| Error::Invalid {
                            op: "encode",
                            detail: format!("unknown tag {t:?}"),
                        })
                })
                .collect::<Result<_>>()?;
            let (ids, word_ids) = tok.encode_words(tokens, true)?;
            let aligned = align_word_labels(&word_ids, &labels)?;
            Encoded {
                ids,
                target: Target::Tags(aligned),
                prompt_len: 0,
            }
        }
        Example::Span {
            context,
            question,
            answer,
            answer_start,
        } => {
            let (q, sep) = if bert {
                let cls = tok.cls_id().ok_or_else(|| no_special("[CLS]"))?;
                let sep = tok.sep_id().ok_or_else(|| no_special("[SEP]"))?;
                let mut q = vec![cls];
                q.extend(tok.encode(question, false)?);
                q.push(sep);
                (q, Some(sep))
            } else {
                // A decoder reads left to right: the question first, so every context token has seen it.
                let eos = tok.eos_id().ok_or_else(|| no_special("end"))?;
                let mut q = tok.encode(question, false)?;
                q.push(eos);
                (q, None)
            };
            let (c_ids, offsets) = tok.encode_with_offsets(context, false)?;
            let (a0, a1) = (*answer_start, answer_start + answer.len());
            let start = offsets.iter().position(|&(_, e)| e > a0);
            let end = offsets.iter().rposition(|&(s, _)| s < a1);
            let (Some(start), Some(end)) = (start, end) else {
                return invalid(
                    "encode",
                    format!("answer {answer:?} is not inside the context's tokens"),
                );
            };
            let mut ids = q.clone();
            ids.extend(&c_ids);
            ids.extend(sep);
            let target = Target::Span {
                start: q.len() + start,
                end: q.len() + end,
            };
            if ids.len() > max_len {
                return invalid(
                    "encode",
                    format!(
                        "fields \"question\" and \"context\": take {} tokens, more than max_len {max_len}",
                        ids.len()
                    ),
                );
            }
            Encoded {
                ids,
                target,
                prompt_len: 0,
            }
        }
        Example::Generation { prompt, response } => {
            if bert {
                return invalid("encode", "generation needs a decoder model, not an encoder");
            }
            let eos = tok.eos_id().ok_or_else(|| no_special("end"))?;
            let mut ids = tok.encode(prompt, false)?;
            let prompt_len = ids.len();
            if prompt_len == 0 {
                return invalid("encode", "field \"prompt\": encodes to no tokens");
            }
            // The response is truncated to fit, but a prompt must leave room for at least one
            // token of it (what training learns and evaluation generates).
            if prompt_len >= max_len {
                return invalid(
                    "encode",
                    format!(
                        "field \"prompt\": takes {prompt_len} tokens, max_len is {max_len}: no room is left for the response"
                    ),
                );
            }
            ids.extend(tok.encode(&format!(" {response}"), false)?);
            ids.push(eos);
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    if i < prompt_len {
                        IGNORE_INDEX
                    } else {
                        t as i64
                    }
                })
                .collect();
            Encoded {
                ids,
                target: Target::Lm(labels),
                prompt_len,
            }
        }
    };
    if e.ids.len() > max_len {
        e.ids.truncate(max_len);
        match &mut e.target {
            Target::Tags(l) | Target::Lm(l) => l.truncate(max_len),
            Target::Class(_) | Target::Span { .. } => {}
        }
    }
    Ok(e)
}
