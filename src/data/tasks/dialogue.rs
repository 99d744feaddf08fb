//! Dialogue: a conversation between a user and an assistant, as `(is_user, text)` turns; the last
//! assistant turn is what the model must write.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::data::text::{article, capitalize};
use crate::data::world::{Picker, NUMBER_WORDS};

/// A conversation as `(is_user, text)` turns, ending with an assistant turn. Everything the
/// assistant says follows from what the user said, so held-out conversations are answerable.
pub(crate) fn dialogue(pick: &Picker, rng: &mut StdRng) -> Vec<(bool, String)> {
    let w = pick.world;
    let p = &w.people[pick.person(rng)];
    let q = &w.people[p.friend];
    let first = p.first;
    let mut turns: Vec<(bool, String)> = Vec::new();
    let greet = |turns: &mut Vec<(bool, String)>| {
        turns.push((true, format!("Hello, my name is {first}.")));
        turns.push((false, format!("Hello {first}, how can I help you today?")));
    };
    match rng.random_range(0..5) {
        0 => {
            // The user tells two facts about themselves, then asks for one back.
            let city = w.cities[p.city].name;
            let org = w.orgs[p.org].name;
            let food = w.foods[p.food].name;
            let (a, job) = (article(p.job), p.job);
            let mut facts = [
                (
                    format!("I live in {city}"),
                    "Where do I live again?",
                    format!("You live in {city}."),
                ),
                (
                    format!("I work for {org}"),
                    "Which company do I work for?",
                    format!("You work for {org}."),
                ),
                (
                    format!("I am {a} {job}"),
                    "What is my job?",
                    format!("You are {a} {job}, {first}."),
                ),
                (
                    format!("I like {food}"),
                    "What food do I like?",
                    format!("You like {food}."),
                ),
            ];
            facts.shuffle(rng);
            let asked = rng.random_range(0..2);
            let intro = format!("Hi, I am {}. {} and {}.", p.name(), facts[0].0, facts[1].0);
            turns.push((true, intro));
            turns.push((
                false,
                format!("Nice to meet you, {first}. How can I help you?"),
            ));
            turns.push((true, facts[asked].1.to_string()));
            turns.push((false, facts[asked].2.clone()));
        }
        1 => {
            let food = w.foods[q.food].name;
            if rng.random_bool(0.4) {
                greet(&mut turns);
            }
            turns.push((true, format!("My friend {} loves {food}.", q.name())));
            turns.push((
                false,
                "Good to know! What would you like to do?".to_string(),
            ));
            turns.push((true, format!("What should I cook for {} tonight?", q.first)));
            turns.push((
                false,
                format!("You could cook {food}, because {} loves it.", q.first),
            ));
        }
        2 => {
            let f = pick.food(rng);
            let k = rng.random_range(2..=3);
            if rng.random_bool(0.4) {
                greet(&mut turns);
            }
            turns.push((
                true,
                format!(
                    "A plate of {} costs {} dollars here. How much do {} plates cost?",
                    f.name, f.price, NUMBER_WORDS[k]
                ),
            ));
            turns.push((
                false,
                format!(
                    "{} plates of {} cost {} dollars.",
                    capitalize(NUMBER_WORDS[k]),
                    f.name,
                    k as u32 * f.price
                ),
            ));
        }
        3 => {
            let e = &w.events[*p.events.choose(rng).unwrap_or(&0)];
            let ecity = w.cities[e.city].name;
            if rng.random_bool(0.4) {
                greet(&mut turns);
            }
            turns.push((
                true,
                format!("I am going to the {} in {ecity} on {}.", e.name, e.date()),
            ));
            turns.push((false, "That sounds fun! Who is going with you?".to_string()));
            if rng.random_bool(0.5) {
                turns.push((
                    true,
                    format!("{} is coming too. When is it again?", q.name()),
                ));
                turns.push((false, format!("The {} is on {}.", e.name, e.date())));
            } else {
                turns.push((
                    true,
                    format!("{} is coming too. Where is it again?", q.name()),
                ));
                turns.push((false, format!("The {} is in {ecity}.", e.name)));
            }
        }
        _ => {
            greet(&mut turns);
            turns.push((true, "Nothing, I just wanted to say thank you.".to_string()));
            turns.push((false, format!("You are welcome, {first}. Have a nice day!")));
        }
    }
    turns
}
