//! Extractive question answering: two to four facts about a person as the context, a question
//! about one of them, and the answer as a span (text and byte offset) of the context.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::example::Example;
use crate::data::text::{fact_sentence, question, Fact, Mention};
use crate::data::world::Picker;

/// Two to four facts about one person; the question asks for one of them, and the answer occurs
/// exactly once in the context (examples where it would not are drawn again).
pub(super) fn qa(pick: &Picker, rng: &mut StdRng) -> Example {
    let w = pick.world;
    let mut last = None;
    for _ in 0..100 {
        let pi = pick.person(rng);
        let p = &w.people[pi];
        let mut facts: Vec<Fact> = Fact::ALL
            .into_iter()
            .filter(|&f| f != Fact::Cats || p.cats > 0)
            .collect();
        facts.shuffle(rng);
        facts.truncate(rng.random_range(2..=4));
        let target = rng.random_range(0..facts.len());
        let mut context = String::new();
        let (mut answer, mut answer_start) = (String::new(), 0);
        for (i, &fact) in facts.iter().enumerate() {
            // The answer's sentence names the person, so that it is never a sentence like
            // "She is 40 years old." that the corpus could contain too.
            let mention = match i {
                0 => Mention::Full,
                _ if i != target && rng.random_bool(0.5) => Mention::Pronoun,
                _ => Mention::First,
            };
            let (sentence, span) = fact_sentence(w, pi, fact, mention, rng);
            if !context.is_empty() {
                context.push(' ');
            }
            if i == target {
                answer_start = context.len() + sentence.find(&span).unwrap_or(0);
                answer = span;
            }
            context.push_str(&sentence);
        }
        let question = if facts[target] == Fact::Lives && rng.random_bool(0.3) {
            // The reverse question: its answer is the person, named in the first sentence.
            answer = p.name();
            answer_start = context.find(&answer).unwrap_or(0);
            format!("Who lives in {}?", w.cities[p.city].name)
        } else {
            question(w, pi, facts[target], rng)
        };
        let unique = context.matches(answer.as_str()).count() == 1;
        let example = Example::Span {
            context,
            question,
            answer,
            answer_start,
        };
        if unique {
            return example;
        }
        last = Some(example);
    }
    // A pathological world where no answer is ever unique: the span is still correct.
    last.unwrap_or_else(|| Example::Span {
        context: "Nobody lives here.".to_string(),
        question: "Who lives here?".to_string(),
        answer: "Nobody".to_string(),
        answer_start: 0,
    })
}
