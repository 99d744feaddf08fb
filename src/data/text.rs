//! The text writers that both the pre-training corpus ([`super::corpus`]) and the task generators
//! ([`super::tasks`]) use: the kinds of fact a sentence can state about a person, the sentence
//! that states one and the question that asks for it, and two English helpers (articles, capitals).
//! Keeping them here lets the corpus and the tasks share phrasings without importing each other.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::world::{World, NUMBER_WORDS};

/// The kinds of fact a sentence can state about a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fact {
    Lives,
    Works,
    Job,
    Likes,
    Age,
    Cats,
    Attended,
    Friend,
}

impl Fact {
    pub(crate) const ALL: [Fact; 8] = [
        Fact::Lives,
        Fact::Works,
        Fact::Job,
        Fact::Likes,
        Fact::Age,
        Fact::Cats,
        Fact::Attended,
        Fact::Friend,
    ];
}

/// How a sentence refers to its person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mention {
    Full,
    First,
    Pronoun,
}

/// One sentence stating `fact` about person `pi`, and the part of it that answers a question
/// about that fact (a city, a name, a number...).
pub(crate) fn fact_sentence(
    world: &World,
    pi: usize,
    fact: Fact,
    mention: Mention,
    rng: &mut StdRng,
) -> (String, String) {
    let p = &world.people[pi];
    let s = match mention {
        Mention::Full => p.name(),
        Mention::First => p.first.to_string(),
        Mention::Pronoun => p.pronoun().to_string(),
    };
    let cap = capitalize(&s);
    let poss = match mention {
        Mention::Pronoun => capitalize(p.possessive()),
        _ => format!("{s}'s"),
    };
    let city = world.cities[p.city].name;
    let org = world.orgs[p.org].name;
    let food = world.foods[p.food].name;
    let pick =
        |rng: &mut StdRng, options: &[String]| options.choose(rng).cloned().unwrap_or_default();
    match fact {
        Fact::Lives => {
            let options = [
                format!("{cap} lives in {city}."),
                format!("{cap} has a small flat in {city}."),
                format!("{cap} moved to {city} years ago."),
                format!("These days {s} lives in {city}."),
            ];
            (pick(rng, &options), city.to_string())
        }
        Fact::Works => {
            let options = [
                format!("{cap} works for {org}."),
                format!("{cap} has a job at {org}."),
                format!("{cap} works at {org}."),
            ];
            (pick(rng, &options), org.to_string())
        }
        Fact::Job => {
            let (a, job) = (article(p.job), p.job);
            let options = [
                format!("{cap} works as {a} {job}."),
                format!("{cap} is {a} {job}."),
                format!("{cap} has worked as {a} {job} for years."),
            ];
            (pick(rng, &options), job.to_string())
        }
        Fact::Likes => {
            let options = [
                format!("{cap} likes {food}."),
                format!("{poss} favourite food is {food}."),
                format!("{cap} loves eating {food}."),
                format!("{cap} often cooks {food} at home."),
            ];
            (pick(rng, &options), food.to_string())
        }
        Fact::Age => {
            let age = p.age;
            let options = [
                format!("{cap} is {age} years old."),
                format!("{cap} turned {age} this year."),
            ];
            (pick(rng, &options), age.to_string())
        }
        Fact::Cats => match p.cats {
            0 => (format!("{cap} has no cats."), "no".to_string()),
            1 => (format!("{cap} has one cat."), "one".to_string()),
            n => {
                let w = NUMBER_WORDS[n as usize];
                (format!("{cap} has {w} cats."), w.to_string())
            }
        },
        Fact::Attended => {
            let e = &world.events[*p.events.choose(rng).unwrap_or(&0)];
            let ecity = world.cities[e.city].name;
            let options = [
                format!("{cap} went to the {} in {ecity}.", e.name),
                format!("{cap} attended the {}.", e.name),
                format!("Last year {s} visited the {}.", e.name),
            ];
            (pick(rng, &options), e.name.to_string())
        }
        Fact::Friend => {
            let q = world.people[p.friend].name();
            let options = [
                format!("{cap} is a good friend of {q}."),
                format!("{cap} and {q} are old friends."),
                format!("{cap} often meets {q} for lunch."),
            ];
            (pick(rng, &options), q)
        }
    }
}

/// A question about `fact` of person `pi`, naming them by full or first name.
pub(crate) fn question(world: &World, pi: usize, fact: Fact, rng: &mut StdRng) -> String {
    let p = &world.people[pi];
    let name = if rng.random_bool(0.7) {
        p.name()
    } else {
        p.first.to_string()
    };
    let options: Vec<String> = match fact {
        Fact::Lives => vec![
            format!("Where does {name} live?"),
            format!("In which city does {name} live?"),
            format!("Which city does {name} live in?"),
        ],
        Fact::Works => vec![
            format!("Who does {name} work for?"),
            format!("Which company does {name} work for?"),
            format!("Where does {name} work?"),
        ],
        Fact::Job => vec![
            format!("What is {name}'s job?"),
            format!("What does {name} do for a living?"),
        ],
        Fact::Likes => vec![
            format!("What is {name}'s favourite food?"),
            format!("What food does {name} like?"),
        ],
        Fact::Age => vec![format!("How old is {name}?")],
        Fact::Cats => vec![format!("How many cats does {name} have?")],
        Fact::Attended => vec![
            format!("Which event did {name} go to?"),
            format!("What event did {name} attend?"),
        ],
        Fact::Friend => vec![
            format!("Who is {name}'s friend?"),
            format!("Who is a friend of {name}?"),
        ],
    };
    options.choose(rng).cloned().unwrap_or_default()
}

/// "a" or "an".
pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// First letter upper-case.
pub(crate) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
