use super::rng;
use crate::word_labels::align_word_labels;
use rand::Rng;

/// A random tokenisation: [CLS], each word in 1 to 3 pieces, [SEP].
fn random_words(rng: &mut rand::rngs::StdRng) -> (Vec<Option<usize>>, Vec<i64>) {
    let words = rng.random_range(0..7);
    let mut word_ids = vec![None];
    for w in 0..words {
        for _ in 0..rng.random_range(1..4) {
            word_ids.push(Some(w));
        }
    }
    word_ids.push(None);
    let labels = (0..words).map(|_| rng.random_range(0..9)).collect();
    (word_ids, labels)
}

#[test]
fn matches_tunelab_on_random_tokenisations() {
    let mut rng = rng(1);
    for _ in 0..100 {
        let (word_ids, labels) = random_words(&mut rng);
        let want = tunelab::data::batch::align_word_labels(&word_ids, &labels).unwrap();
        let got = align_word_labels(&word_ids, &labels);
        assert_eq!(got, want, "word_ids {word_ids:?}, word labels {labels:?}");
    }
}

#[test]
fn a_word_split_across_a_special_token_starts_again() {
    // Two words that happen to have the same index on both sides of a special token (two
    // sentences of a pair): the second run starts a word again, as in tunelab.
    let word_ids = [None, Some(0), Some(0), None, Some(0), Some(1), None];
    let labels = [5, 6];
    let want = tunelab::data::batch::align_word_labels(&word_ids, &labels).unwrap();
    assert_eq!(align_word_labels(&word_ids, &labels), want);
}
