//! Named-entity recognition: one templated sentence about a person, tokenized into words and
//! tagged in BIO form over persons, places, organisations and foods ([`super::NER_TAGS`]).
//! Events, months, jobs and numbers appear too but are tagged `O`.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::example::Example;
use crate::data::text::{article, capitalize};
use crate::data::world::{Picker, MONTHS};

/// Sentence templates: `{SLOT}` tokens are filled with entities, other tokens are tagged `O`.
/// Events, months, jobs and numbers are slots too, but tagged `O`: the model must tell them apart.
const NER_TEMPLATES: [&str; 18] = [
    "{PER} lives in {LOC} .",
    "{PER} works for {ORG} .",
    "{FIRST} works for {ORG} in {ORGLOC} .",
    "{PER} likes {FOOD} .",
    "{PER} and {PER2} ate {FOOD2} in {LOC} .",
    "At {ORG} , {FIRST} often eats {FOOD} for lunch .",
    "{ORG} has an office in {ORGLOC} .",
    "{PER} moved to {LOC} to work for {ORG} .",
    "Does {FIRST} still live in {LOC} ?",
    "People in {LOC2} love {FOOD2} .",
    "{PER2} told {FIRST} about a job at {ORG} .",
    "In {LOC} , {PER} cooked {FOOD} for {PER2} .",
    "{PER} went to the {EVENT} in {EVLOC} .",
    "{FIRST} 's favourite food is {FOOD} .",
    "Everyone at {ORG} likes {FOOD2} .",
    "{PER} flew from {LOC} to {LOC2} last {MONTH} .",
    "{PER} is {A} {JOB} at {ORG} .",
    "Tickets for the {EVENT} in {EVLOC} cost {N} dollars .",
];

pub(super) fn ner(pick: &Picker, rng: &mut StdRng) -> Example {
    let w = pick.world;
    let p = &w.people[pick.person(rng)];
    let org = &w.orgs[p.org];
    let event = &w.events[*p.events.choose(rng).unwrap_or(&0)];
    let loc2 = pick.other_city(p.city, rng);
    let template = NER_TEMPLATES
        .choose(rng)
        .copied()
        .unwrap_or(NER_TEMPLATES[0]);
    let (mut tokens, mut tags) = (Vec::new(), Vec::new());
    for slot in template.split_whitespace() {
        let (text, kind) = match slot {
            "{PER}" => (p.name(), "PER"),
            "{FIRST}" => (p.first.to_string(), "PER"),
            "{PER2}" => (w.people[p.friend].name(), "PER"),
            "{LOC}" => (w.cities[p.city].name.to_string(), "LOC"),
            "{LOC2}" => (loc2.to_string(), "LOC"),
            "{ORGLOC}" => (w.cities[org.city].name.to_string(), "LOC"),
            "{EVLOC}" => (w.cities[event.city].name.to_string(), "LOC"),
            "{ORG}" => (org.name.to_string(), "ORG"),
            "{FOOD}" => (w.foods[p.food].name.to_string(), "FOOD"),
            "{FOOD2}" => (pick.food(rng).name.to_string(), "FOOD"),
            "{EVENT}" => (event.name.to_string(), "O"),
            "{MONTH}" => (MONTHS[event.month].to_string(), "O"),
            "{JOB}" => (p.job.to_string(), "O"),
            "{A}" => (article(p.job).to_string(), "O"),
            "{N}" => (event.ticket.to_string(), "O"),
            word => (word.to_string(), "O"),
        };
        for (i, word) in text.split_whitespace().enumerate() {
            tokens.push(word.to_string());
            tags.push(match (kind, i) {
                ("O", _) => "O".to_string(),
                (k, 0) => format!("B-{k}"),
                (k, _) => format!("I-{k}"),
            });
        }
    }
    if let Some(first) = tokens.first_mut() {
        *first = capitalize(first);
    }
    Example::Tagging { tokens, tags }
}

/// Joins tokens back into a sentence: "Anna Lee lives in Hanoi ." -> "Anna Lee lives in Hanoi.".
pub fn detokenize(tokens: &[String]) -> String {
    let mut out = String::new();
    for t in tokens {
        let glue = matches!(t.as_str(), "." | "," | "?" | "!" | "'s");
        if !out.is_empty() && !glue {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}
