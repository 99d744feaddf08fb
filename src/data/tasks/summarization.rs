//! Summarization: a short story about one person (its core sentences plus distractors) and the
//! one-line summary built from the core.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::data::text::{article, capitalize};
use crate::data::world::{Picker, JOBS, MONTHS};

/// Three to six sentences about one person, and a summary built from the sentences that matter.
/// Distractor sentences (weather, the bus, the boxes...) are left out of the summary; some core
/// sentences are optional and change the summary when present.
pub(crate) fn story(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    let w = pick.world;
    let p = &w.people[pick.person(rng)];
    let q = &w.people[p.friend];
    let (name, first, qname, qfirst) = (p.name(), p.first, q.name(), q.first);
    let he = capitalize(p.pronoun());
    let (pron, his) = (p.pronoun(), capitalize(p.possessive()));
    let city = w.cities[p.city].name;
    let org = &w.orgs[p.org];
    let food = &w.foods[p.food];
    let month = MONTHS.choose(rng).copied().unwrap_or("May");
    let (core, extras, summary): (Vec<String>, Vec<String>, String) = match rng.random_range(0..4) {
        0 => {
            let e = &w.events[*p.events.choose(rng).unwrap_or(&0)];
            let mut core = vec![
                format!("{name} lives in {city}."),
                format!(
                    "On {}, {pron} went to the {} with {qname}.",
                    e.date(),
                    e.name
                ),
            ];
            let weather = ["sunny", "rainy", "windy", "cold"].choose(rng).copied();
            let day = ["great", "long", "happy"].choose(rng).copied();
            let extras = vec![
                format!("The {} was held in {}.", e.name, w.cities[e.city].name),
                format!("Tickets cost {} dollars.", e.ticket),
                format!("The weather was {}.", weather.unwrap_or("sunny")),
                format!("{first} said it was a {} day.", day.unwrap_or("great")),
            ];
            let summary = if rng.random_bool(0.5) {
                core.push(format!("They ate {} and listened to music.", food.name));
                format!(
                    "{name} went to the {} with {qname} and ate {}.",
                    e.name, food.name
                )
            } else {
                format!("{name} went to the {} with {qname}.", e.name)
            };
            (core, extras, summary)
        }
        1 => {
            let others: Vec<&str> = JOBS.iter().copied().filter(|j| *j != p.job).collect();
            let old_job = others.choose(rng).copied().unwrap_or("cook");
            let core = vec![
                format!("{name} used to work as {} {old_job}.", article(old_job)),
                format!("In {month}, {pron} started a new job at {}.", org.name),
                format!("{he} now works there as {} {}.", article(p.job), p.job),
            ];
            let extras = vec![
                format!(
                    "The office of {} is in {}.",
                    org.name, w.cities[org.city].name
                ),
                format!("{he} takes the bus to work every morning."),
                format!("{his} new colleagues are very kind."),
                format!("{he} likes the new job a lot."),
            ];
            let summary = format!(
                "{name} started a new job at {} as {} {}.",
                org.name,
                article(p.job),
                p.job
            );
            (core, extras, summary)
        }
        2 => {
            let core = vec![
                format!("{name} invited {qname} for dinner."),
                format!("{he} cooked {} at home.", food.name),
            ];
            let hours = ["two", "three"].choose(rng).copied().unwrap_or("two");
            let extras = vec![
                format!("It took {hours} hours."),
                format!("{qfirst} brought some fruit."),
                format!("{qfirst} said the {} {} very good.", food.name, food.was()),
                "They talked until late.".to_string(),
                format!("{first} lives in {city}."),
            ];
            (
                core,
                extras,
                format!("{name} cooked {} for {qname}.", food.name),
            )
        }
        _ => {
            let old = pick.other_city(p.city, rng);
            let mut core = vec![
                format!("{name} used to live in {old}."),
                format!("Last {month}, {pron} moved to {city}."),
            ];
            let extras = vec![
                format!("{first} found a small flat near the river."),
                format!("{first} now works for {}.", org.name),
                "The new flat is close to a park.".to_string(),
            ];
            let summary = if rng.random_bool(0.5) {
                core.push(format!("{his} friend {qname} helped with the boxes."));
                format!("{name} moved from {old} to {city} with help from {qname}.")
            } else {
                format!("{name} moved from {old} to {city}.")
            };
            (core, extras, summary)
        }
    };
    finish_story(core, extras, summary, rng)
}

/// Appends distractor sentences, in random order, until the story has three to six sentences.
/// They come after the core so that the story still reads in order, and they name people by
/// name rather than pronoun so that they never become ambiguous.
fn finish_story(
    mut sentences: Vec<String>,
    mut extras: Vec<String>,
    summary: String,
    rng: &mut StdRng,
) -> (String, String) {
    let target = rng.random_range(3..=6).max(sentences.len());
    extras.shuffle(rng);
    sentences.extend(extras.into_iter().take(target - sentences.len()));
    (sentences.join(" "), summary)
}
