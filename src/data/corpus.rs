//! The pre-training corpus: short English documents about the [`Partition::Seen`] side of the
//! [`World`], written by [`World::corpus`]. Most documents state facts about one entity; the rest
//! are text in the style of a task (reviews, questions, stories, dialogues, requests with their
//! code), written with the task generators of [`super::tasks`] and the sentences shared with them
//! (`text.rs`). Data flows one way: the corpus reads the tasks, the tasks never read the corpus.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::tasks::codegen::{code_request, execute};
use super::tasks::dialogue::dialogue;
use super::tasks::sentiment::review;
use super::tasks::summarization::story;
use super::text::{article, capitalize, fact_sentence, question, Fact, Mention};
use super::world::{Partition, Person, Picker, World, MONTHS, NUMBER_WORDS};

impl World {
    /// `n_docs` pre-training documents about the seen side of the world, deterministic in `seed`.
    ///
    /// A document is one short paragraph: facts about a person, a city, an organisation, a food
    /// or an event, in several phrasings each; or text in the style of a task (reviews with
    /// negation and contrast, questions with answers, a story with its gist, a dialogue, requests
    /// with their code and value), so that fine-tuning starts from a model that knows the words.
    /// Only [`Partition::Seen`] entities and arithmetic triples are used, which is what keeps
    /// every validation and test example out of the corpus.
    pub fn corpus(&self, n_docs: usize, seed: u64) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xC0_4905);
        let pick = Picker::new(self, Partition::Seen);
        (0..n_docs)
            .map(|_| match rng.random_range(0..100) {
                0..20 => person_doc(self, &pick, &mut rng),
                20..27 => city_doc(self, &pick, &mut rng),
                27..33 => org_doc(self, &pick, &mut rng),
                33..39 => food_doc(self, &pick, &mut rng),
                39..45 => event_doc(self, &pick, &mut rng),
                45..58 => review_doc(&pick, &mut rng),
                58..68 => qa_doc(self, &pick, &mut rng),
                68..78 => story_doc(&pick, &mut rng),
                78..88 => dialogue_doc(&pick, &mut rng),
                _ => code_doc(&pick, &mut rng),
            })
            .collect()
    }
}

/// Three to six facts about one person: full name first, then pronoun or first name.
fn person_doc(world: &World, pick: &Picker, rng: &mut StdRng) -> String {
    let pi = pick.person(rng);
    let mut facts = Fact::ALL.to_vec();
    facts.shuffle(rng);
    facts.truncate(rng.random_range(3..=6));
    let mut out = Vec::new();
    for (i, &fact) in facts.iter().enumerate() {
        let mention = match i {
            0 => Mention::Full,
            _ if rng.random_bool(0.6) => Mention::Pronoun,
            _ => Mention::First,
        };
        out.push(fact_sentence(world, pi, fact, mention, rng).0);
    }
    out.join(" ")
}

fn city_doc(world: &World, pick: &Picker, rng: &mut StdRng) -> String {
    let ci = *pick.cities.choose(rng).unwrap_or(&0);
    let city = world.cities[ci].name;
    let intros = [
        format!("{city} is a big city."),
        format!("{city} is a city with many parks."),
        format!("Life in {city} is busy."),
        format!("Many visitors come to {city} in summer."),
    ];
    let mut out = vec![intros.choose(rng).cloned().unwrap_or_default()];
    let mut residents: Vec<String> = world
        .people
        .iter()
        .filter(|p| p.city == ci)
        .map(Person::name)
        .collect();
    residents.shuffle(rng);
    residents.truncate(3);
    if !residents.is_empty() {
        out.push(format!("{} live in {city}.", list_and(&residents)));
        let n = world.people.iter().filter(|p| p.city == ci).count();
        out.push(match n {
            1 => format!("Only one person we know lives in {city}."),
            n => format!("{n} people we know live in {city}."),
        });
    }
    for o in world.orgs.iter().filter(|o| o.city == ci).take(2) {
        out.push(format!("{} has its main office in {city}.", o.name));
    }
    for e in world.events.iter().filter(|e| e.city == ci).take(2) {
        out.push(format!(
            "The {} takes place in {city} every {}.",
            e.name, MONTHS[e.month]
        ));
    }
    out.join(" ")
}

fn org_doc(world: &World, pick: &Picker, rng: &mut StdRng) -> String {
    let oi = *pick.orgs.choose(rng).unwrap_or(&0);
    let o = &world.orgs[oi];
    let mut out = vec![match rng.random_range(0..2) {
        0 => format!(
            "{} is a company based in {}.",
            o.name, world.cities[o.city].name
        ),
        _ => format!(
            "The office of {} is in {}.",
            o.name, world.cities[o.city].name
        ),
    }];
    let mut staff: Vec<&Person> = world.people.iter().filter(|p| p.org == oi).collect();
    let n = staff.len();
    staff.shuffle(rng);
    for p in staff.iter().take(3) {
        out.push(format!(
            "{} works for {} as {} {}.",
            p.name(),
            o.name,
            article(p.job),
            p.job
        ));
    }
    out.push(match n {
        1 => format!("One person works for {}.", o.name),
        n => format!("{n} people work for {}.", o.name),
    });
    out.join(" ")
}

fn food_doc(world: &World, pick: &Picker, rng: &mut StdRng) -> String {
    let fi = *pick.foods.choose(rng).unwrap_or(&0);
    let f = &world.foods[fi];
    let k = rng.random_range(2..=4);
    let mut out = vec![
        format!("A plate of {} costs {} dollars.", f.name, f.price),
        format!(
            "{} plates of {} cost {} dollars.",
            capitalize(NUMBER_WORDS[k]),
            f.name,
            k as u32 * f.price
        ),
    ];
    let fans: Vec<String> = world
        .people
        .iter()
        .filter(|p| p.food == fi)
        .map(Person::name)
        .take(3)
        .collect();
    if !fans.is_empty() {
        out.push(format!("{} like {} very much.", list_and(&fans), f.name));
    }
    out.shuffle(rng);
    out.join(" ")
}

fn event_doc(world: &World, pick: &Picker, rng: &mut StdRng) -> String {
    let ei = *pick.events.choose(rng).unwrap_or(&0);
    let e = &world.events[ei];
    let mut out = vec![
        format!(
            "The {} was held in {} on {}.",
            e.name,
            world.cities[e.city].name,
            e.date()
        ),
        format!("Tickets for the {} cost {} dollars.", e.name, e.ticket),
    ];
    let mut guests: Vec<String> = world
        .people
        .iter()
        .filter(|p| p.events.contains(&ei))
        .map(Person::name)
        .collect();
    let n = guests.len();
    guests.shuffle(rng);
    guests.truncate(2);
    if !guests.is_empty() {
        out.push(format!("{} went to the {}.", list_and(&guests), e.name));
        out.push(format!(
            "In total, {n} people we know went to the {}.",
            e.name
        ));
    }
    out.join(" ")
}

/// Questions followed by the sentence that answers them.
fn qa_doc(world: &World, pick: &Picker, rng: &mut StdRng) -> String {
    let pi = pick.person(rng);
    let mut out = Vec::new();
    for _ in 0..rng.random_range(2..=3) {
        let fact = *Fact::ALL.choose(rng).unwrap_or(&Fact::Lives);
        let q = question(world, pi, fact, rng);
        out.push(q);
        out.push(fact_sentence(world, pi, fact, Mention::Full, rng).0);
    }
    out.join(" ")
}

/// Corpus text in the style of the sentiment task: one to three reviews, most followed by a
/// rating, as reviews on the web are. The rating's first word already tells its polarity, so a
/// language model that predicts it must read the review's negations and contrasts: this is where
/// a pre-trained base learns the sentiment that fine-tuning then reads out.
fn review_doc(pick: &Picker, rng: &mut StdRng) -> String {
    (0..rng.random_range(1..=3))
        .map(|_| {
            let positive = rng.random_bool(0.5);
            let text = review(pick, rng, positive);
            if !rng.random_bool(0.8) {
                return text;
            }
            let ratings: &[&str] = if positive {
                &["Five stars.", "Recommended.", "Loved it."]
            } else {
                &["One star.", "Not recommended.", "Avoid it."]
            };
            let rating = ratings.choose(rng).copied().unwrap_or_default();
            format!("{text} {rating}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Corpus text in the style of summarization: a story and its gist.
fn story_doc(pick: &Picker, rng: &mut StdRng) -> String {
    let (story, summary) = story(pick, rng);
    format!("{story} In short, {summary}")
}

/// Corpus text in the style of dialogue, with other speaker labels than the task's
/// `User:`/`Assistant:`, so that fine-tuning still has a format to teach.
fn dialogue_doc(pick: &Picker, rng: &mut StdRng) -> String {
    dialogue(pick, rng)
        .into_iter()
        .map(|(user, text)| format!("{}: {text}", if user { "Visitor" } else { "Guide" }))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Corpus text in the style of codegen: requests, their code, and the value it computes.
fn code_doc(pick: &Picker, rng: &mut StdRng) -> String {
    (0..rng.random_range(2..=3))
        .map(|_| {
            let (request, code) = code_request(pick, rng);
            let value = execute(&code, pick.world).unwrap_or_else(|| "unknown".to_string());
            format!("{request} In code, that is {code}, which gives {value}.")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// "A", "A and B", "A, B and C".
fn list_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::data::tasks::{build, leaks, Example, Task};

    /// `needle` occurs in `hay` as whole words (not inside a longer word).
    fn contains_words(hay: &str, needle: &str) -> bool {
        hay.match_indices(needle).any(|(i, _)| {
            let before = hay[..i].chars().next_back();
            let after = hay[i + needle.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    }

    #[test]
    fn same_seed_same_world_and_corpus() {
        let (a, b) = (World::generate(7), World::generate(7));
        assert_eq!(format!("{:?}", a), format!("{:?}", b));
        assert_eq!(a.corpus(200, 1), b.corpus(200, 1));
        assert_ne!(a.corpus(50, 1), a.corpus(50, 2));
        let c = World::generate(8);
        assert_ne!(format!("{:?}", a.people), format!("{:?}", c.people));
    }

    #[test]
    fn corpus_never_mentions_held_out_names() {
        let w = World::generate(11);
        let corpus = w.corpus(3000, 5);
        let held = w.held_out_names();
        for doc in &corpus {
            for name in &held {
                assert!(!contains_words(doc, name), "{name:?} in corpus doc {doc:?}");
            }
        }
    }

    #[test]
    fn corpus_sentences_are_short_and_vocabulary_small() {
        let w = World::generate(1);
        let corpus = w.corpus(2000, 1);
        let mut vocab = BTreeSet::new();
        for doc in &corpus {
            for sentence in doc.split(['.', '?', '!', '\n']) {
                let n = sentence.split_whitespace().count();
                assert!(n <= 25, "{n} words: {sentence:?}");
            }
            for word in doc.split(|c: char| !c.is_alphanumeric() && c != '_') {
                if !word.is_empty() && !word.chars().all(|c| c.is_ascii_digit()) {
                    vocab.insert(word.to_lowercase());
                }
            }
        }
        assert!(vocab.len() < 900, "vocabulary of {} words", vocab.len());
    }

    #[test]
    fn corpus_contains_no_validation_or_test_example() {
        let w = World::generate(42);
        let corpus = w.corpus(5000, 9);
        for task in Task::all() {
            let splits = build(task, &w, 2);
            let held: Vec<Example> = splits.test.into_iter().chain(splits.validation).collect();
            assert_eq!(leaks(&corpus, &held), Vec::<String>::new(), "{task:?}");
        }
        // The check itself finds a leak when there is one.
        let test = build(Task::Summarization, &w, 2).test;
        let mut leaky = corpus.clone();
        if let Example::Generation { response, .. } = &test[0] {
            leaky.push(format!("Once upon a time. {response} The end."));
        }
        assert_eq!(leaks(&leaky, &test[..1]).len(), 1);
    }
}
