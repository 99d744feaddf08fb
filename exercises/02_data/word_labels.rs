//! # Sub-word label alignment for NER
//!
//! Named-entity recognition labels *words* ("New" B-LOC, "Yorker" I-LOC), but the model sees
//! sub-word tokens: a WordPiece tokenizer splits "Yorker" into "York" and "##er", and adds
//! special tokens ([CLS], [SEP]) that belong to no word. The tokenizer reports each token's word
//! index (`word_ids()` in Hugging Face), `None` for special tokens.
//!
//! The rule of Hugging Face's token-classification examples (`label_all_tokens=False`): the
//! **first** token of each word gets the word's label; the later pieces of a word and the special
//! tokens get −100 (`IGNORE_INDEX`), which the loss and the metric skip, so each word counts
//! exactly once.
//!
//!     word_ids [None, 0, 1, 1, None], word labels [3, 4] → [-100, 3, 4, -100, -100]
//!
//! Graded against `tunelab::data::batch::align_word_labels` on random tokenisations.

use crate::types::IGNORE_INDEX;

/// One label per token from one label per word (every `Some(w)` has `w < word_labels.len()`).
pub fn align_word_labels(word_ids: &[Option<usize>], word_labels: &[i64]) -> Vec<i64> {
    // TODO: remember the previous token's word; a token starts a word when its word is Some and
    // TODO: differs from the previous one.
    todo!()
}
