//! The synthetic world: a few hundred people, cities, organisations, foods and events, the facts
//! that link them, and the English pre-training corpus written about them.
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

use super::tasks;

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
                0..20 => self.person_doc(&pick, &mut rng),
                20..27 => self.city_doc(&pick, &mut rng),
                27..33 => self.org_doc(&pick, &mut rng),
                33..39 => self.food_doc(&pick, &mut rng),
                39..45 => self.event_doc(&pick, &mut rng),
                45..58 => tasks::review_doc(&pick, &mut rng),
                58..68 => self.qa_doc(&pick, &mut rng),
                68..78 => tasks::story_doc(&pick, &mut rng),
                78..88 => tasks::dialogue_doc(&pick, &mut rng),
                _ => tasks::code_doc(&pick, &mut rng),
            })
            .collect()
    }

    /// One sentence stating `fact` about person `pi`, and the part of it that answers a question
    /// about that fact (a city, a name, a number...).
    pub(crate) fn fact_sentence(
        &self,
        pi: usize,
        fact: Fact,
        mention: Mention,
        rng: &mut StdRng,
    ) -> (String, String) {
        let p = &self.people[pi];
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
        let city = self.cities[p.city].name;
        let org = self.orgs[p.org].name;
        let food = self.foods[p.food].name;
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
                let e = &self.events[*p.events.choose(rng).unwrap_or(&0)];
                let ecity = self.cities[e.city].name;
                let options = [
                    format!("{cap} went to the {} in {ecity}.", e.name),
                    format!("{cap} attended the {}.", e.name),
                    format!("Last year {s} visited the {}.", e.name),
                ];
                (pick(rng, &options), e.name.to_string())
            }
            Fact::Friend => {
                let q = self.people[p.friend].name();
                let options = [
                    format!("{cap} is a good friend of {q}."),
                    format!("{cap} and {q} are old friends."),
                    format!("{cap} often meets {q} for lunch."),
                ];
                (pick(rng, &options), q)
            }
        }
    }

    /// Three to six facts about one person: full name first, then pronoun or first name.
    fn person_doc(&self, pick: &Picker, rng: &mut StdRng) -> String {
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
            out.push(self.fact_sentence(pi, fact, mention, rng).0);
        }
        out.join(" ")
    }

    fn city_doc(&self, pick: &Picker, rng: &mut StdRng) -> String {
        let ci = *pick.cities.choose(rng).unwrap_or(&0);
        let city = self.cities[ci].name;
        let intros = [
            format!("{city} is a big city."),
            format!("{city} is a city with many parks."),
            format!("Life in {city} is busy."),
            format!("Many visitors come to {city} in summer."),
        ];
        let mut out = vec![intros.choose(rng).cloned().unwrap_or_default()];
        let mut residents: Vec<String> = self
            .people
            .iter()
            .filter(|p| p.city == ci)
            .map(Person::name)
            .collect();
        residents.shuffle(rng);
        residents.truncate(3);
        if !residents.is_empty() {
            out.push(format!("{} live in {city}.", list_and(&residents)));
            let n = self.people.iter().filter(|p| p.city == ci).count();
            out.push(match n {
                1 => format!("Only one person we know lives in {city}."),
                n => format!("{n} people we know live in {city}."),
            });
        }
        for o in self.orgs.iter().filter(|o| o.city == ci).take(2) {
            out.push(format!("{} has its main office in {city}.", o.name));
        }
        for e in self.events.iter().filter(|e| e.city == ci).take(2) {
            out.push(format!(
                "The {} takes place in {city} every {}.",
                e.name, MONTHS[e.month]
            ));
        }
        out.join(" ")
    }

    fn org_doc(&self, pick: &Picker, rng: &mut StdRng) -> String {
        let oi = *pick.orgs.choose(rng).unwrap_or(&0);
        let o = &self.orgs[oi];
        let mut out = vec![match rng.random_range(0..2) {
            0 => format!(
                "{} is a company based in {}.",
                o.name, self.cities[o.city].name
            ),
            _ => format!(
                "The office of {} is in {}.",
                o.name, self.cities[o.city].name
            ),
        }];
        let mut staff: Vec<&Person> = self.people.iter().filter(|p| p.org == oi).collect();
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

    fn food_doc(&self, pick: &Picker, rng: &mut StdRng) -> String {
        let fi = *pick.foods.choose(rng).unwrap_or(&0);
        let f = &self.foods[fi];
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
        let fans: Vec<String> = self
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

    fn event_doc(&self, pick: &Picker, rng: &mut StdRng) -> String {
        let ei = *pick.events.choose(rng).unwrap_or(&0);
        let e = &self.events[ei];
        let mut out = vec![
            format!(
                "The {} was held in {} on {}.",
                e.name,
                self.cities[e.city].name,
                e.date()
            ),
            format!("Tickets for the {} cost {} dollars.", e.name, e.ticket),
        ];
        let mut guests: Vec<String> = self
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
    fn qa_doc(&self, pick: &Picker, rng: &mut StdRng) -> String {
        let pi = pick.person(rng);
        let mut out = Vec::new();
        for _ in 0..rng.random_range(2..=3) {
            let fact = *Fact::ALL.choose(rng).unwrap_or(&Fact::Lives);
            let q = tasks::question(self, pi, fact, rng);
            out.push(q);
            out.push(self.fact_sentence(pi, fact, Mention::Full, rng).0);
        }
        out.join(" ")
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

/// "A", "A and B", "A, B and C".
pub(crate) fn list_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
