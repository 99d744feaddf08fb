//! The synthetic world: a few hundred people, cities, organisations, foods and events, and the
//! facts that link them. This file holds the entities only; the pre-training corpus written about
//! them is in `corpus.rs`, the task datasets in `tasks/`, and both read the world from here.
//!
//! Everything is drawn from a seeded [`StdRng`], so `World::generate(seed)` is the same world on
//! every machine. The vocabulary is deliberately small (a few hundred words plus names) and the
//! sentences short, so a ~1-4M parameter transformer can learn the language in minutes on a CPU.
//!
//! **The hold-out.** Every entity, and every name part, belongs to one [`Partition`]. Held-out
//! people have held-out first *and* last names, and live, work, eat and go out only among held-out
//! cities, organisations, foods and events. The corpus and the training splits are written from the
//! [`Partition::Seen`] side only; validation and test from the [`Partition::HeldOut`] side. A model
//! therefore cannot score on test by remembering facts or names from pre-training: it has to read.
//! Arithmetic has the same split, over operand-operator-operand triples ([`World::is_held_out_triple`]).

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

const FEMALE_NAMES: [&str; 24] = [
    "Anna", "Clara", "Emma", "Grace", "Hana", "Iris", "Julia", "Laura", "Maya", "Nora", "Olivia",
    "Rosa", "Sara", "Tina", "Vera", "Zoe", "Alice", "Bella", "Diana", "Elena", "Fiona", "Helen",
    "Lucy", "Mia",
];
const MALE_NAMES: [&str; 24] = [
    "Ben", "Carlos", "David", "Ethan", "Felix", "George", "Hugo", "Ivan", "Jack", "Leo", "Marco",
    "Nathan", "Omar", "Paul", "Ryan", "Sam", "Tom", "Victor", "Adam", "Daniel", "Kevin", "Luis",
    "Max", "Oscar",
];
const LAST_NAMES: [&str; 36] = [
    "Lee", "Nguyen", "Garcia", "Smith", "Khan", "Silva", "Tanaka", "Novak", "Costa", "Miller",
    "Rossi", "Fischer", "Ortiz", "Murphy", "Hughes", "Sato", "Chen", "Lopez", "Walker", "Moreau",
    "Petrov", "Haddad", "Okafor", "Larsen", "Dubois", "Jensen", "Cruz", "Reyes", "Wright", "Bauer",
    "Ahmed", "Mendes", "Ito", "Kowalski", "Meyer", "Patel",
];
#[rustfmt::skip]
const CITIES: [&str; 30] = [
    "Hanoi", "Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Lagos", "Quito", "Seoul", "Dublin",
    "Nairobi", "Lisbon", "Madrid", "Vienna", "Prague", "Dakar", "Manila", "Bogota",
    "Buenos Aires", "New York", "Cape Town", "San Jose", "Hong Kong", "Kuala Lumpur",
    "Rio de Janeiro", "Mexico City", "Tel Aviv", "Abu Dhabi", "Sao Paulo", "Los Angeles",
];
#[rustfmt::skip]
const ORGS: [&str; 24] = [
    "Acme Tools", "Blue River Bank", "Green Leaf Farms", "Northwind Foods", "Sunrise Media",
    "Atlas Motors", "Bright Path School", "Red Rock Mining", "Orion Labs", "Silver Lake Hotel",
    "Golden Gate Travel", "Maple Tree Press", "Pioneer Energy", "Harbor Line Shipping",
    "Summit Health", "Crystal Water Company", "Iron Bridge Works", "Lotus Tech", "Falcon Air",
    "Cedar Books", "Nova Software", "Ocean View Clinic", "Quick Cart Market", "Tiger Sports Club",
];
/// Foods and whether the name is plural ("the dumplings were", "the soup was").
#[rustfmt::skip]
const FOODS: [(&str, bool); 30] = [
    ("pho", false), ("sushi", false), ("pizza", false), ("ramen", false), ("paella", false),
    ("falafel", false), ("hummus", false), ("goulash", false), ("couscous", false),
    ("pancakes", true), ("dumplings", true), ("burritos", true), ("noodle soup", false),
    ("green curry", false), ("apple pie", false), ("fried rice", false), ("fish tacos", true),
    ("banana bread", false), ("pad thai", false), ("lentil soup", false), ("beef stew", false),
    ("chicken salad", false), ("spring rolls", true), ("chocolate cake", false),
    ("lemon tart", false), ("carrot cake", false), ("grilled corn", false),
    ("mushroom risotto", false), ("mango sticky rice", false), ("cheese toast", false),
];
/// Event names; sentences say "the Spring Fair".
#[rustfmt::skip]
const EVENTS: [&str; 16] = [
    "Spring Fair", "Jazz Night", "River Race", "Film Festival", "Food Market", "Winter Market",
    "City Marathon", "Art Show", "Science Fair", "Chess Open", "Summer Concert", "Kite Festival",
    "Poetry Evening", "Tech Meetup", "Dance Party", "Harvest Dinner",
];
/// Jobs are shared by both partitions: they are common words, not entities.
pub const JOBS: [&str; 12] = [
    "teacher", "nurse", "driver", "cook", "engineer", "writer", "doctor", "farmer", "designer",
    "pilot", "painter", "lawyer",
];
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Small numbers are written as words in arithmetic requests and cat counts.
pub const NUMBER_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

const SEEN_PEOPLE: usize = 160;
const HELD_OUT_PEOPLE: usize = 50;
/// Share of every name pool (and of arithmetic triples) kept out of the corpus and train splits.
const HELD_OUT_FRACTION: f64 = 0.25;

/// Which side of the hold-out an entity is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Partition {
    /// May appear in the pre-training corpus and the training splits.
    Seen,
    /// Appears only in validation and test splits.
    HeldOut,
}

#[derive(Clone, Debug)]
pub struct Person {
    pub first: &'static str,
    pub last: &'static str,
    pub female: bool,
    pub age: u32,
    pub job: &'static str,
    pub cats: u32,
    /// Index into [`World::cities`].
    pub city: usize,
    /// Index into [`World::orgs`].
    pub org: usize,
    /// Index into [`World::foods`]: the favourite food.
    pub food: usize,
    /// Indices into [`World::events`]: events attended (one or two).
    pub events: Vec<usize>,
    /// Index into [`World::people`]: a friend from the same partition.
    pub friend: usize,
    pub part: Partition,
}

impl Person {
    pub fn name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
    /// "she" / "he".
    pub fn pronoun(&self) -> &'static str {
        if self.female {
            "she"
        } else {
            "he"
        }
    }
    /// "her" / "his".
    pub fn possessive(&self) -> &'static str {
        if self.female {
            "her"
        } else {
            "his"
        }
    }
}

#[derive(Clone, Debug)]
pub struct City {
    pub name: &'static str,
    pub part: Partition,
}

#[derive(Clone, Debug)]
pub struct Org {
    pub name: &'static str,
    /// Index into [`World::cities`]: where its office is.
    pub city: usize,
    pub part: Partition,
}

#[derive(Clone, Debug)]
pub struct Food {
    pub name: &'static str,
    pub plural: bool,
    /// Price of one plate, in dollars.
    pub price: u32,
    pub part: Partition,
}

impl Food {
    /// "was" or "were", for "the dumplings were cold".
    pub fn was(&self) -> &'static str {
        if self.plural {
            "were"
        } else {
            "was"
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub name: &'static str,
    /// Index into [`World::cities`].
    pub city: usize,
    /// Day of the month, 1-28.
    pub day: u32,
    /// Index into [`MONTHS`].
    pub month: usize,
    /// Ticket price, in dollars.
    pub ticket: u32,
    pub part: Partition,
}

impl Event {
    /// "12 May".
    pub fn date(&self) -> String {
        format!("{} {}", self.day, MONTHS[self.month])
    }
}

/// The whole world. Entity fields are public so tasks and lab code can read facts directly.
#[derive(Clone, Debug)]
pub struct World {
    pub seed: u64,
    pub people: Vec<Person>,
    pub cities: Vec<City>,
    pub orgs: Vec<Org>,
    pub foods: Vec<Food>,
    pub events: Vec<Event>,
    /// `(a, op, b)` arithmetic triples that only validation and test may use.
    held_out_triples: BTreeSet<(i64, char, i64)>,
}

impl World {
    /// The world for `seed`: same seed, same world, on every machine.
    pub fn generate(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let female_parts = hold_out(&mut rng, FEMALE_NAMES.len());
        let male_parts = hold_out(&mut rng, MALE_NAMES.len());
        let last_parts = hold_out(&mut rng, LAST_NAMES.len());
        let cities: Vec<City> = zip_parts(&mut rng, &CITIES)
            .map(|(name, part)| City { name, part })
            .collect();
        let city_ids = |part| ids(cities.iter().map(|c| c.part), part);
        let orgs: Vec<Org> = zip_parts(&mut rng, &ORGS)
            .map(|(name, part)| Org {
                name,
                city: *city_ids(part).choose(&mut rng).unwrap_or(&0),
                part,
            })
            .collect::<Vec<_>>();
        let food_names: Vec<&'static str> = FOODS.iter().map(|f| f.0).collect();
        let foods: Vec<Food> = zip_parts(&mut rng, &food_names)
            .zip(FOODS)
            .map(|((name, part), (_, plural))| Food {
                name,
                plural,
                price: rng.random_range(3..=25),
                part,
            })
            .collect::<Vec<_>>();
        let events: Vec<Event> = zip_parts(&mut rng, &EVENTS)
            .map(|(name, part)| Event {
                name,
                city: *city_ids(part).choose(&mut rng).unwrap_or(&0),
                day: rng.random_range(1..=28),
                month: rng.random_range(0..12),
                ticket: rng.random_range(5..=40),
                part,
            })
            .collect::<Vec<_>>();

        // Name parts: (first, female, partition) and (last, partition).
        let firsts: Vec<(&'static str, bool, Partition)> = FEMALE_NAMES
            .iter()
            .zip(&female_parts)
            .map(|(n, p)| (*n, true, *p))
            .chain(
                MALE_NAMES
                    .iter()
                    .zip(&male_parts)
                    .map(|(n, p)| (*n, false, *p)),
            )
            .collect();
        let lasts: Vec<(&'static str, Partition)> =
            LAST_NAMES.iter().copied().zip(last_parts).collect();

        let mut world = World {
            seed,
            people: Vec::new(),
            cities,
            orgs,
            foods,
            events,
            held_out_triples: BTreeSet::new(),
        };
        for (part, n) in [
            (Partition::Seen, SEEN_PEOPLE),
            (Partition::HeldOut, HELD_OUT_PEOPLE),
        ] {
            let mut names: Vec<(&'static str, bool, &'static str)> = firsts
                .iter()
                .filter(|f| f.2 == part)
                .flat_map(|f| {
                    lasts
                        .iter()
                        .filter(|l| l.1 == part)
                        .map(|l| (f.0, f.1, l.0))
                })
                .collect();
            names.shuffle(&mut rng);
            let start = world.people.len();
            let count = n.min(names.len());
            let pick = |rng: &mut StdRng, v: Vec<usize>| *v.choose(rng).unwrap_or(&0);
            for &(first, female, last) in &names[..count] {
                let city = pick(&mut rng, world.cities_in(part));
                let org = pick(&mut rng, world.orgs_in(part));
                let food = pick(&mut rng, world.foods_in(part));
                let mut events = world.events_in(part);
                events.shuffle(&mut rng);
                events.truncate(rng.random_range(1..=2));
                world.people.push(Person {
                    first,
                    last,
                    female,
                    age: rng.random_range(19..=68),
                    job: JOBS.choose(&mut rng).copied().unwrap_or("cook"),
                    cats: rng.random_range(0..=4),
                    city,
                    org,
                    food,
                    events,
                    friend: 0,
                    part,
                });
            }
            // Friends: a random other person of the same partition.
            for i in start..start + count {
                let mut j = rng.random_range(start..start + count);
                if j == i {
                    j = if i + 1 < start + count { i + 1 } else { start };
                }
                world.people[i].friend = j;
            }
        }
        for a in 1..=9 {
            for op in ['+', '-', '*'] {
                for b in 1..=9 {
                    if rng.random_bool(HELD_OUT_FRACTION) {
                        world.held_out_triples.insert((a, op, b));
                    }
                }
            }
        }
        world
    }

    pub fn people_in(&self, part: Partition) -> Vec<usize> {
        ids(self.people.iter().map(|x| x.part), part)
    }
    pub fn cities_in(&self, part: Partition) -> Vec<usize> {
        ids(self.cities.iter().map(|x| x.part), part)
    }
    pub fn orgs_in(&self, part: Partition) -> Vec<usize> {
        ids(self.orgs.iter().map(|x| x.part), part)
    }
    pub fn foods_in(&self, part: Partition) -> Vec<usize> {
        ids(self.foods.iter().map(|x| x.part), part)
    }
    pub fn events_in(&self, part: Partition) -> Vec<usize> {
        ids(self.events.iter().map(|x| x.part), part)
    }

    /// Whether the arithmetic step `a op b` (single digits, op one of `+ - *`) is held out.
    pub fn is_held_out_triple(&self, a: i64, op: char, b: i64) -> bool {
        self.held_out_triples.contains(&(a, op, b))
    }

    /// Every held-out surface string: full names, first and last names, cities, organisations,
    /// foods and events. None of them may occur in the corpus or in a training split.
    pub fn held_out_names(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for p in self.people.iter().filter(|p| p.part == Partition::HeldOut) {
            names.insert(p.name());
            names.insert(p.first.to_string());
            names.insert(p.last.to_string());
        }
        let held = Partition::HeldOut;
        names.extend(
            self.cities
                .iter()
                .filter(|x| x.part == held)
                .map(|x| x.name.to_string()),
        );
        names.extend(
            self.orgs
                .iter()
                .filter(|x| x.part == held)
                .map(|x| x.name.to_string()),
        );
        names.extend(
            self.foods
                .iter()
                .filter(|x| x.part == held)
                .map(|x| x.name.to_string()),
        );
        names.extend(
            self.events
                .iter()
                .filter(|x| x.part == held)
                .map(|x| x.name.to_string()),
        );
        names.into_iter().collect()
    }

    /// Whether `name` (an entity or a name part, exact spelling) is held out.
    pub fn is_held_out(&self, name: &str) -> bool {
        self.held_out_names().iter().any(|n| n == name)
    }
}

/// Random picks restricted to one partition, shared by the corpus and the task generators.
pub(crate) struct Picker<'w> {
    pub world: &'w World,
    pub part: Partition,
    pub people: Vec<usize>,
    pub cities: Vec<usize>,
    pub orgs: Vec<usize>,
    pub foods: Vec<usize>,
    pub events: Vec<usize>,
}

impl<'w> Picker<'w> {
    pub(crate) fn new(world: &'w World, part: Partition) -> Picker<'w> {
        Picker {
            world,
            part,
            people: world.people_in(part),
            cities: world.cities_in(part),
            orgs: world.orgs_in(part),
            foods: world.foods_in(part),
            events: world.events_in(part),
        }
    }
    pub(crate) fn person(&self, rng: &mut StdRng) -> usize {
        *self.people.choose(rng).unwrap_or(&0)
    }
    pub(crate) fn city(&self, rng: &mut StdRng) -> &'w City {
        &self.world.cities[*self.cities.choose(rng).unwrap_or(&0)]
    }
    pub(crate) fn org(&self, rng: &mut StdRng) -> &'w Org {
        &self.world.orgs[*self.orgs.choose(rng).unwrap_or(&0)]
    }
    pub(crate) fn food(&self, rng: &mut StdRng) -> &'w Food {
        &self.world.foods[*self.foods.choose(rng).unwrap_or(&0)]
    }
    pub(crate) fn event(&self, rng: &mut StdRng) -> &'w Event {
        &self.world.events[*self.events.choose(rng).unwrap_or(&0)]
    }
    /// A city of this partition other than `not`, for "moved from A to B".
    pub(crate) fn other_city(&self, not: usize, rng: &mut StdRng) -> &'static str {
        let others: Vec<usize> = self.cities.iter().copied().filter(|&c| c != not).collect();
        others
            .choose(rng)
            .map_or("the countryside", |&c| self.world.cities[c].name)
    }
}

/// Indices whose partition is `part`.
fn ids(parts: impl Iterator<Item = Partition>, part: Partition) -> Vec<usize> {
    parts
        .enumerate()
        .filter(|(_, p)| *p == part)
        .map(|(i, _)| i)
        .collect()
}

/// A partition for each of `n` pool items: a random `HELD_OUT_FRACTION` of them held out.
fn hold_out(rng: &mut StdRng, n: usize) -> Vec<Partition> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let n_held = (n as f64 * HELD_OUT_FRACTION).round() as usize;
    let mut parts = vec![Partition::Seen; n];
    for &i in &order[..n_held] {
        parts[i] = Partition::HeldOut;
    }
    parts
}

/// Names with their partitions, holding out single-word and multi-word names in proportion, so
/// that held-out NER and QA examples still have multi-word entities.
fn zip_parts<'a>(
    rng: &mut StdRng,
    names: &'a [&'static str],
) -> impl Iterator<Item = (&'static str, Partition)> + 'a {
    let multi: Vec<usize> = (0..names.len())
        .filter(|&i| names[i].contains(' '))
        .collect();
    let single: Vec<usize> = (0..names.len())
        .filter(|&i| !names[i].contains(' '))
        .collect();
    let mut parts = vec![Partition::Seen; names.len()];
    for group in [multi, single] {
        for (i, p) in group.iter().zip(hold_out(rng, group.len())) {
            parts[*i] = p;
        }
    }
    names.iter().copied().zip(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_closed() {
        let w = World::generate(3);
        assert_eq!(w.people_in(Partition::Seen).len(), SEEN_PEOPLE);
        assert_eq!(w.people_in(Partition::HeldOut).len(), HELD_OUT_PEOPLE);
        for (i, p) in w.people.iter().enumerate() {
            assert_ne!(p.friend, i);
            assert_eq!(w.cities[p.city].part, p.part);
            assert_eq!(w.orgs[p.org].part, p.part);
            assert_eq!(w.foods[p.food].part, p.part);
            assert_eq!(w.people[p.friend].part, p.part);
            assert!(p.events.iter().all(|&e| w.events[e].part == p.part));
        }
        for name in w.held_out_names() {
            let seen_first = w
                .people
                .iter()
                .any(|p| p.part == Partition::Seen && (p.first == name || p.last == name));
            assert!(!seen_first, "{name} is held out and seen");
        }
        // Multi-word entities exist on both sides.
        for part in [Partition::Seen, Partition::HeldOut] {
            assert!(w
                .cities_in(part)
                .iter()
                .any(|&c| w.cities[c].name.contains(' ')));
            assert!(w
                .foods_in(part)
                .iter()
                .any(|&f| w.foods[f].name.contains(' ')));
        }
    }
}
