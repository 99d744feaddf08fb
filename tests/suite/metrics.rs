//! Evaluation metrics on small cases worked out by hand, with the edge cases: empty input, no
//! entities, everything wrong.

use crate::common::HAND_TOL;
use approx::assert_abs_diff_eq;
use tunelab::data::world::World;
use tunelab::metrics::{
    accuracy, entities, entity_f1, exact_match, execution_accuracy, macro_f1, mean_rouge_l,
    normalize_answer, perplexity, perplexity_from_sum, rouge_l, squad, token_f1, Entity,
};

// ---------------------------------------------------------------------------------------------
// Classification

#[test]
fn accuracy_by_hand() {
    // 3 of 4 right.
    assert_abs_diff_eq!(
        accuracy(&[0, 1, 2, 1], &[0, 2, 2, 1]).unwrap(),
        0.75,
        epsilon = HAND_TOL
    );
    assert_abs_diff_eq!(accuracy(&[1, 0], &[0, 1]).unwrap(), 0.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(accuracy(&[], &[]).unwrap(), 0.0, epsilon = HAND_TOL);
    assert!(accuracy(&[0], &[0, 1]).is_err());
}

/// predictions [0, 0, 1, 2, 2, 2], references [0, 1, 1, 2, 2, 0]:
///   class 0: TP 1 (pos 0), FP 1 (pos 1), FN 1 (pos 5) → F1 = 2 / (2 + 1 + 1) = 1/2
///   class 1: TP 1 (pos 2), FN 1 (pos 1)               → F1 = 2 / (2 + 0 + 1) = 2/3
///   class 2: TP 2 (pos 3, 4), FP 1 (pos 5)            → F1 = 4 / (4 + 1 + 0) = 4/5
///   macro = (1/2 + 2/3 + 4/5) / 3 = 59/90
#[test]
fn macro_f1_by_hand() {
    let f = macro_f1(&[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 2, 0]).unwrap();
    assert_abs_diff_eq!(f, 59.0 / 90.0, epsilon = HAND_TOL);
    // A class only predicted (3) still counts, with F1 0: (2/3 + 0) / 2.
    assert_abs_diff_eq!(
        macro_f1(&[3, 0], &[0, 0]).unwrap(),
        1.0 / 3.0,
        epsilon = HAND_TOL
    );
    // Everything wrong, everything right, nothing at all.
    assert_abs_diff_eq!(macro_f1(&[1, 0], &[0, 1]).unwrap(), 0.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(
        macro_f1(&[1, 0, 1], &[1, 0, 1]).unwrap(),
        1.0,
        epsilon = HAND_TOL
    );
    assert_abs_diff_eq!(macro_f1(&[], &[]).unwrap(), 0.0, epsilon = HAND_TOL);
    assert!(macro_f1(&[0, 1], &[0]).is_err());
}

// ---------------------------------------------------------------------------------------------
// NER

fn ent(kind: &str, start: usize, end: usize) -> Entity {
    Entity {
        kind: kind.to_string(),
        start,
        end,
    }
}

fn tags(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[test]
fn entities_follow_seqeval_default_mode() {
    assert_eq!(
        entities(&tags("B-PER I-PER O B-LOC")),
        [ent("PER", 0, 2), ent("LOC", 3, 4)]
    );
    // I- without B- starts an entity.
    assert_eq!(entities(&tags("O I-PER I-PER O")), [ent("PER", 1, 3)]);
    assert_eq!(entities(&tags("I-ORG")), [ent("ORG", 0, 1)]);
    // An I- of another type ends the running entity and starts its own.
    assert_eq!(
        entities(&tags("B-PER I-LOC I-LOC")),
        [ent("PER", 0, 1), ent("LOC", 1, 3)]
    );
    // B- after B- is two entities.
    assert_eq!(
        entities(&tags("B-PER B-PER")),
        [ent("PER", 0, 1), ent("PER", 1, 2)]
    );
    assert!(entities(&tags("O O O")).is_empty());
    assert!(entities::<&str>(&[]).is_empty());
}

/// seqeval's README example: one MISC entity off by one token, one PER entity right:
/// P = R = F1 = 1/2.
#[test]
fn entity_f1_seqeval_readme_example() {
    let truth = [tags("O O O B-MISC I-MISC I-MISC O"), tags("B-PER I-PER O")];
    let pred = [
        tags("O O B-MISC I-MISC I-MISC I-MISC O"),
        tags("B-PER I-PER O"),
    ];
    let s = entity_f1(&pred, &truth).unwrap();
    assert_abs_diff_eq!(s.precision, 0.5, epsilon = HAND_TOL);
    assert_abs_diff_eq!(s.recall, 0.5, epsilon = HAND_TOL);
    assert_abs_diff_eq!(s.f1, 0.5, epsilon = HAND_TOL);
    assert_eq!((s.n_predicted, s.n_reference, s.n_correct), (2, 2, 1));
}

/// References: PER(0..2), LOC(3..4) | ORG(0..1); predictions: PER(0..2) right, ORG(3..4) wrong
/// type, ORG(0..2) wrong span. P = 1/3, R = 1/3, F1 = 1/3.
#[test]
fn entity_f1_needs_type_and_exact_span() {
    let truth = [tags("B-PER I-PER O B-LOC"), tags("B-ORG O")];
    let pred = [tags("B-PER I-PER O B-ORG"), tags("B-ORG I-ORG")];
    let s = entity_f1(&pred, &truth).unwrap();
    assert_abs_diff_eq!(s.precision, 1.0 / 3.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(s.recall, 1.0 / 3.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(s.f1, 1.0 / 3.0, epsilon = HAND_TOL);
}

#[test]
fn entity_f1_edge_cases() {
    // No entities on either side: every score 0, as seqeval.
    let none = [tags("O O"), tags("O")];
    let s = entity_f1(&none, &none).unwrap();
    assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
    // Nothing predicted: precision 0 (not NaN), recall 0.
    let truth = [tags("B-PER O"), tags("B-LOC")];
    let s = entity_f1(&[tags("O O"), tags("O")], &truth).unwrap();
    assert_eq!(
        (s.precision, s.recall, s.f1, s.n_reference),
        (0.0, 0.0, 0.0, 2)
    );
    // Everything wrong.
    let s = entity_f1(&[tags("O B-PER"), tags("B-ORG")], &truth).unwrap();
    assert_eq!((s.f1, s.n_predicted, s.n_correct), (0.0, 2, 0));
    // Everything right, including an entity that starts with I-.
    let s = entity_f1(&[tags("I-PER O"), tags("B-LOC")], &truth).unwrap();
    assert_abs_diff_eq!(s.f1, 1.0, epsilon = HAND_TOL);
    // An entity never crosses a sentence boundary.
    let s = entity_f1(
        &[tags("O B-PER"), tags("I-PER")],
        &[tags("O B-PER"), tags("I-PER")],
    );
    assert_eq!(s.unwrap().n_reference, 2);
    // Empty input, and mismatched sentences.
    let empty: Vec<Vec<String>> = vec![];
    assert_eq!(entity_f1(&empty, &empty).unwrap().f1, 0.0);
    assert!(entity_f1(&[tags("O O")], &[tags("O")]).is_err());
    assert!(entity_f1(&[tags("O")], &[tags("O"), tags("O")]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Extractive QA

#[test]
fn squad_normalisation() {
    assert_eq!(normalize_answer("The  Eiffel Tower!"), "eiffel tower");
    assert_eq!(normalize_answer("an apple, a pear"), "apple pear");
    // Articles go only as whole words.
    assert_eq!(normalize_answer("Theater anchors"), "theater anchors");
    assert_eq!(normalize_answer("  the "), "");
    assert!(exact_match("The Eiffel Tower", "eiffel tower."));
    assert!(!exact_match("Eiffel", "Eiffel Tower"));
}

/// "the cat sat on the mat" vs "a cat on a mat" → "cat sat on mat" (4) vs "cat on mat" (3):
/// common 3, P = 3/4, R = 1, F1 = 2·(3/4)·1 / (7/4) = 6/7.
/// Bags: "x x y" vs "x y y" share one x and one y: P = R = 2/3.
#[test]
fn token_f1_by_hand() {
    assert_abs_diff_eq!(
        token_f1("the cat sat on the mat", "a cat on a mat"),
        6.0 / 7.0,
        epsilon = HAND_TOL
    );
    assert_abs_diff_eq!(token_f1("x x y", "x y y"), 2.0 / 3.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(token_f1("dog", "cat"), 0.0, epsilon = HAND_TOL);
    // Empty after normalisation: 1 if both are, else 0.
    assert_abs_diff_eq!(token_f1("", ""), 1.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(token_f1("the", ""), 1.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(token_f1("", "cat"), 0.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(token_f1("cat", "!"), 0.0, epsilon = HAND_TOL);
}

/// Pairs ("Eiffel Tower", "the Eiffel Tower") and ("cat sat", "cat"): EM [1, 0] → 1/2;
/// F1 [1, 2·(1/2)·1 / (3/2) = 2/3] → 5/6.
#[test]
fn squad_corpus_scores() {
    let s = squad(&["Eiffel Tower", "cat sat"], &["the Eiffel Tower", "cat"]).unwrap();
    assert_abs_diff_eq!(s.exact_match, 0.5, epsilon = HAND_TOL);
    assert_abs_diff_eq!(s.f1, 5.0 / 6.0, epsilon = HAND_TOL);
    let none: [&str; 0] = [];
    let s = squad(&none, &none).unwrap();
    assert_eq!((s.exact_match, s.f1), (0.0, 0.0));
    assert!(squad(&["a"], &["a", "b"]).is_err());
}

// ---------------------------------------------------------------------------------------------
// ROUGE-L

/// "the cat sat on the mat" vs "the cat is on the mat": LCS "the cat on the mat" = 5 of 6 each
/// way, F = 5/6. "a b c d" vs "b d e": LCS "b d" = 2, P = 2/4, R = 2/3, F = 4/7.
#[test]
fn rouge_l_by_hand() {
    let f = rouge_l("the cat sat on the mat", "the cat is on the mat");
    assert_abs_diff_eq!(f, 5.0 / 6.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(rouge_l("a b c d", "b d e"), 4.0 / 7.0, epsilon = HAND_TOL);
    // Order matters: "c b a" vs "a b c" share a subsequence of one token.
    assert_abs_diff_eq!(rouge_l("c b a", "a b c"), 1.0 / 3.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(rouge_l("same words", "same words"), 1.0, epsilon = HAND_TOL);
    // Whitespace tokens compared exactly; empty sides score 0.
    assert_abs_diff_eq!(rouge_l("Cat", "cat"), 0.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(rouge_l("", "cat"), 0.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(rouge_l("cat", " "), 0.0, epsilon = HAND_TOL);
    let m = mean_rouge_l(&["a b c d", "x"], &["b d e", "y"]).unwrap();
    assert_abs_diff_eq!(m, 2.0 / 7.0, epsilon = HAND_TOL);
    assert!(mean_rouge_l(&["a"], &[]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Perplexity

#[test]
fn perplexity_is_exp_of_mean_token_loss() {
    // A uniform guess over 7 tokens has loss ln 7 and perplexity 7.
    assert_abs_diff_eq!(perplexity(7f64.ln()), 7.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(perplexity(0.0), 1.0, epsilon = HAND_TOL);
    // Four tokens summing to 4 ln 5: perplexity 5.
    assert_abs_diff_eq!(
        perplexity_from_sum(4.0 * 5f64.ln(), 4).unwrap(),
        5.0,
        epsilon = HAND_TOL
    );
    assert!(perplexity_from_sum(1.0, 0).is_err());
}

// ---------------------------------------------------------------------------------------------
// Execution accuracy

#[test]
fn execution_accuracy_compares_values_not_text() {
    let world = World::generate(7);
    let name = world.people[0].name();
    let age = world.people[0].age;
    let reference = format!("age({name})");
    let predictions = [
        format!("0 + age({name})"), // same value, other text: right
        format!("age({name}) + 1"), // another value: wrong
        format!("age({name}"),      // does not run: wrong
        "nonsense(".to_string(),    // identical to a reference that does not run: wrong
        format!("{age}"),           // the value itself: right
    ];
    let references = [
        reference.clone(),
        reference.clone(),
        reference.clone(),
        "nonsense(".to_string(),
        reference,
    ];
    let acc = execution_accuracy(&predictions, &references, &world).unwrap();
    assert_abs_diff_eq!(acc, 2.0 / 5.0, epsilon = HAND_TOL);
    let none: [&str; 0] = [];
    assert_eq!(execution_accuracy(&none, &none, &world).unwrap(), 0.0);
    assert!(execution_accuracy(&["1"], &none, &world).is_err());
}
