//! Preference data: prompts with a chosen and a rejected response (DPO and its family, the
//! reward model), and unpaired completions labelled desirable or not (KTO).
//!
//! Every response is read as `prompt + " " + response`, as generation examples are
//! ([`super::tasks::Example::Generation`]): the prompt ends with its label (`Answer:`,
//! `Assistant:`, `Code:`) and the response does not start with a space.
//!
//! ## Pairs drawn from the world
//!
//! [`build`] draws preference splits from the [`World`] as [`super::tasks::build_with`] draws
//! the six tasks': deterministic in `(world, seed)`, test first and then validation from
//! [`Partition::HeldOut`] entities (disjoint prompts), then train from [`Partition::Seen`] ones.
//! Each pair is of one of four [`KINDS`], in equal shares in every split:
//!
//! | kind | prompt | chosen | rejected |
//! |---|---|---|---|
//! | `fact` | a context and a question (`Answer:`), or a conversation (`Assistant:`) | the answer | the same answer with its fact (a city, organisation, food, event, person, job, date, number, cat count) replaced by another of the same type and partition |
//! | `evasion` | as for `fact` | the answer | "I don't know." and other evasions |
//! | `style` | as for `fact` | the answer | the answer padded with filler (rambling) or wrapped in insults (rude) |
//! | `code` | a codegen request (`Code:`) | its program | a program that executes to another value ([`super::tasks::same_answer`] is false) |
//!
//! Every fact of a chosen response can be read in its prompt, so a model that reads can rank
//! held-out pairs it never saw. The kinds differ in what ranking them takes: `evasion` and
//! `style` are told apart by their surface, `fact` and `code` only by checking the response
//! against the prompt. Prompt and response take at most 230 characters, so that every pair fits
//! the shipped models' 128 positions. [`build_tagged`] returns each pair's kind beside the splits, so that
//! metrics can be broken down by kind while [`PreferencePair`] stays TRL's three fields.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::tasks::codegen::{code_request, execute, triples};
use super::tasks::dialogue::dialogue;
use super::tasks::Sizes;
use super::text::{article, fact_sentence, question, Fact, Mention};
use super::world::{Partition, Picker, World, JOBS, MONTHS, NUMBER_WORDS};

/// One preference pair, TRL's `{prompt, chosen, rejected}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PreferencePair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// One unpaired example, TRL's `{prompt, completion, label}` for KTO: `label` true when the
/// completion is desirable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KtoExample {
    pub prompt: String,
    pub completion: String,
    pub label: bool,
}

impl PreferencePair {
    /// The pair's chosen response as a supervised generation example: what SFT on the chosen
    /// responses trains on (the baseline of the preference line-up, and the NLL term that keeps
    /// the chosen responses likely).
    pub fn chosen_example(&self) -> super::tasks::Example {
        super::tasks::Example::Generation {
            prompt: self.prompt.clone(),
            response: self.chosen.clone(),
        }
    }

    /// The pair as KTO's two unpaired examples, as TRL's `unpair_preference_dataset` does: the
    /// chosen response desirable, the rejected one not.
    pub fn unpaired(&self) -> [KtoExample; 2] {
        [
            KtoExample {
                prompt: self.prompt.clone(),
                completion: self.chosen.clone(),
                label: true,
            },
            KtoExample {
                prompt: self.prompt.clone(),
                completion: self.rejected.clone(),
                label: false,
            },
        ]
    }
}

/// Train, validation and test pairs.
#[derive(Clone, Debug, Default)]
pub struct PreferenceSplits {
    pub train: Vec<PreferencePair>,
    pub validation: Vec<PreferencePair>,
    pub test: Vec<PreferencePair>,
}

/// The kinds of pair [`build`] draws (see the module's doc); pair i of a split is of kind
/// `KINDS[i % 4]` before the split is shuffled, so every split holds them in equal shares.
pub const KINDS: [&str; 4] = ["fact", "evasion", "style", "code"];

/// The kind of every pair of a [`PreferenceSplits`], index for index: one of [`KINDS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairKinds {
    pub train: Vec<&'static str>,
    pub validation: Vec<&'static str>,
    pub test: Vec<&'static str>,
}

/// The preference splits of `world` with `sizes` pairs each (see the module's doc).
pub fn build(world: &World, seed: u64, sizes: Sizes) -> PreferenceSplits {
    build_tagged(world, seed, sizes).0
}

/// [`build`], and the kind of every pair. Test is drawn first, then validation, both from
/// held-out entities and with prompts distinct from each other; then train from seen entities.
pub fn build_tagged(world: &World, seed: u64, sizes: Sizes) -> (PreferenceSplits, PairKinds) {
    let held = Picker::new(world, Partition::HeldOut);
    let seen = Picker::new(world, Partition::Seen);
    // The tasks' salts are 1 to 6 (`tasks::build_with`): the pairs draw from streams of their own.
    let salt = 0x50u64;
    let rng = |split: u64| StdRng::seed_from_u64(seed ^ (salt << 32) ^ (split << 48));
    let mut taken = HashSet::new();
    let (test, test_kinds) = split(&held, &mut rng(1), sizes.test, &mut taken);
    let (validation, validation_kinds) = split(&held, &mut rng(2), sizes.validation, &mut taken);
    let (train, train_kinds) = split(&seen, &mut rng(3), sizes.train, &mut taken);
    (
        PreferenceSplits {
            train,
            validation,
            test,
        },
        PairKinds {
            train: train_kinds,
            validation: validation_kinds,
            test: test_kinds,
        },
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fact,
    Evasion,
    Style,
    Code,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Fact, Kind::Evasion, Kind::Style, Kind::Code];

    fn name(self) -> &'static str {
        KINDS[self as usize]
    }
}

/// `n` pairs whose prompts are not in `taken` when that can be had in a few tries (as the
/// tasks' splits: a small held-out pool may run out of distinct prompts), with their kinds.
fn split(
    pick: &Picker,
    rng: &mut StdRng,
    n: usize,
    taken: &mut HashSet<String>,
) -> (Vec<PreferencePair>, Vec<&'static str>) {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let mut p = pair(kind, pick, rng);
        for _ in 0..50 {
            if !taken.contains(&p.prompt) {
                break;
            }
            p = pair(kind, pick, rng);
        }
        taken.insert(p.prompt.clone());
        out.push((p, kind.name()));
    }
    out.shuffle(rng);
    out.into_iter().unzip()
}

/// What an assistant says instead of answering.
const EVASIONS: [&str; 4] = [
    "I don't know.",
    "I cannot help with that.",
    "Sorry, I have no idea.",
    "I would rather not answer that.",
];
/// Filler before and after a rambling answer, in the words of the world's text (words the
/// tokenizer never saw would cost a token a letter).
const RAMBLE_OPEN: [&str; 3] = [
    "Good question, let me think.",
    "Well, let me think about it.",
    "That is a good question.",
];
const RAMBLE_CLOSE: [&str; 3] = [
    "I hope that helps you, and have a nice day!",
    "Good to know, and thank you for asking.",
    "That is what I know about it.",
];
/// Insults before and after a rude answer.
const RUDE: [(&str, &str); 3] = [
    ("What a silly question.", "Stop wasting my time."),
    ("Ugh.", "Do not ask me again."),
    ("Obviously.", "Everybody knows that."),
];

/// One pair of `kind` from the partition of `pick`.
fn pair(kind: Kind, pick: &Picker, rng: &mut StdRng) -> PreferencePair {
    if kind == Kind::Code {
        return code_pair(pick, rng);
    }
    let mut fallback = (String::new(), String::new());
    for _ in 0..100 {
        let (prompt, chosen) = answered(pick, rng);
        let rejected = match kind {
            Kind::Fact => wrong_fact(&chosen, pick, rng, true),
            Kind::Evasion => EVASIONS.choose(rng).map(|s| s.to_string()),
            _ if rng.random_bool(0.5) => {
                let open = RAMBLE_OPEN.choose(rng).copied().unwrap_or_default();
                let close = RAMBLE_CLOSE.choose(rng).copied().unwrap_or_default();
                Some(format!("{open} {chosen} {close}"))
            }
            _ => {
                let (before, after) = RUDE.choose(rng).copied().unwrap_or_default();
                Some(format!("{before} {chosen} {after}"))
            }
        };
        match rejected {
            Some(rejected) if fits(&prompt, &chosen, &rejected) => {
                return PreferencePair {
                    prompt,
                    chosen,
                    rejected,
                }
            }
            _ => fallback = (prompt, chosen),
        }
    }
    // Only a world without entities gets here: an evasion stands in for the wrong fact.
    PreferencePair {
        prompt: fallback.0,
        chosen: fallback.1,
        rejected: EVASIONS[0].to_string(),
    }
}

/// The most characters of prompt and response a pair may take: with it every pair fits the
/// shipped models' 128 positions. Held-out names are text the tokenizer never saw (it was
/// trained on the corpus), which it spells out at up to 0.7 tokens a character; at 230
/// characters the longest sequence of 1200 pairs takes 119 tokens of gpt-tiny.
const MAX_CHARS: usize = 230;

/// Whether both sequences of a pair stay within [`MAX_CHARS`].
fn fits(prompt: &str, chosen: &str, rejected: &str) -> bool {
    prompt.len() + 1 + chosen.len().max(rejected.len()) <= MAX_CHARS
}

/// A prompt and its concise answer: a question about a person or an event with the context
/// that answers it (`Answer:`), or a conversation from the dialogue task (`Assistant:`).
fn answered(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    match rng.random_range(0..20) {
        0..9 => person_qa(pick, rng),
        9..12 => event_qa(pick, rng),
        _ => conversation(pick, rng),
    }
}

/// Two or three facts about a person, a question about one of them, and the answer as one
/// sentence naming the person.
fn person_qa(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    let w = pick.world;
    let pi = pick.person(rng);
    let p = &w.people[pi];
    // Someone who went to two events makes "went to the other one" true, not wrong.
    let mut facts: Vec<Fact> = Fact::ALL
        .into_iter()
        .filter(|&f| f != Fact::Attended || p.events.len() == 1)
        .collect();
    facts.shuffle(rng);
    facts.truncate(rng.random_range(2..=3));
    let target = rng.random_range(0..facts.len());
    let (mut context, mut span) = (Vec::new(), String::new());
    for (i, &fact) in facts.iter().enumerate() {
        let mention = match i {
            0 => Mention::Full,
            _ if i != target && rng.random_bool(0.5) => Mention::Pronoun,
            _ => Mention::First,
        };
        let (sentence, s) = fact_sentence(w, pi, fact, mention, rng);
        if i == target {
            span = s;
        }
        context.push(sentence);
    }
    let name = p.name();
    let answer = match facts[target] {
        Fact::Lives => format!("{name} lives in {span}."),
        Fact::Works => format!("{name} works for {span}."),
        Fact::Job => format!("{name} is {} {span}.", article(&span)),
        Fact::Likes => format!("{name} likes {span}."),
        Fact::Age => format!("{name} is {span} years old."),
        Fact::Cats => format!("{name} has {}.", cat_phrase(p.cats as usize)),
        Fact::Attended => format!("{name} went to the {span}."),
        Fact::Friend => format!("{name} is a friend of {span}."),
    };
    let q = question(w, pi, facts[target], rng);
    (
        format!("Context: {}\nQuestion: {q}\nAnswer:", context.join(" ")),
        answer,
    )
}

/// An event's place, date and ticket price, and a question about one of them.
fn event_qa(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    let w = pick.world;
    let e = pick.event(rng);
    let (name, city, date, ticket) = (e.name, w.cities[e.city].name, e.date(), e.ticket);
    let mut context = [
        format!("The {name} takes place in {city} on {date}."),
        format!("A ticket for the {name} costs {ticket} dollars."),
    ];
    context.shuffle(rng);
    let (q, answer) = match rng.random_range(0..3) {
        0 => (
            format!("When is the {name}?"),
            format!("The {name} is on {date}."),
        ),
        1 => (
            format!("Where is the {name}?"),
            format!("The {name} is in {city}."),
        ),
        _ => (
            format!("How much is a ticket for the {name}?"),
            format!("A ticket for the {name} costs {ticket} dollars."),
        ),
    };
    (
        format!("Context: {}\nQuestion: {q}\nAnswer:", context.join(" ")),
        answer,
    )
}

/// A conversation of the dialogue task: its turns before the last as the prompt, the last
/// assistant turn as the answer.
fn conversation(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    let turns = dialogue(pick, rng);
    let Some((last, context)) = turns.split_last() else {
        return person_qa(pick, rng);
    };
    let mut prompt = String::new();
    for (user, text) in context {
        let who = if *user { "User" } else { "Assistant" };
        prompt.push_str(&format!("{who}: {text}\n"));
    }
    prompt.push_str("Assistant:");
    (prompt, last.1.clone())
}

/// A codegen request, its program, and a program that executes to another value. Wrong
/// programs keep the hold-out of arithmetic: on the seen side no held-out `a op b` step, on
/// the held-out side the first step still held out.
fn code_pair(pick: &Picker, rng: &mut StdRng) -> PreferencePair {
    let w = pick.world;
    let mut last = (String::new(), String::new());
    for _ in 0..100 {
        let (request, code) = code_request(pick, rng);
        let prompt = format!("Request: {request}\nCode:");
        let Some(value) = execute(&code, w) else {
            continue;
        };
        for _ in 0..20 {
            let wrong = if rng.random_bool(0.3) {
                swap_operator(&code, rng)
            } else {
                wrong_fact(&code, pick, rng, false)
            };
            let Some(wrong) = wrong else { continue };
            let other_value = execute(&wrong, w).is_some_and(|v| v != value);
            if other_value && same_hold_out(&code, &wrong, pick) {
                return PreferencePair {
                    prompt,
                    chosen: code,
                    rejected: wrong,
                };
            }
        }
        last = (prompt, code);
    }
    // Not reached on a world with entities: one more than the right value is still wrong.
    PreferencePair {
        rejected: format!("{} + 1", last.1),
        prompt: last.0,
        chosen: last.1,
    }
}

/// `code` with one of its operators replaced by another.
fn swap_operator(code: &str, rng: &mut StdRng) -> Option<String> {
    let at: Vec<usize> = code
        .match_indices([' '])
        .map(|(i, _)| i + 1)
        .filter(|&i| {
            matches!(code.as_bytes().get(i), Some(b'+' | b'-' | b'*'))
                && code.as_bytes().get(i + 1) == Some(&b' ')
        })
        .collect();
    let &i = at.choose(rng)?;
    let ops: Vec<char> = ['+', '-', '*']
        .into_iter()
        .filter(|&o| o as u8 != code.as_bytes()[i])
        .collect();
    let op = *ops.choose(rng)?;
    Some(format!("{}{op}{}", &code[..i], &code[i + 1..]))
}

/// Whether `wrong` keeps the arithmetic hold-out of `chosen` (see [`code_pair`]).
fn same_hold_out(chosen: &str, wrong: &str, pick: &Picker) -> bool {
    let held = |t: &(i64, char, i64)| pick.world.is_held_out_triple(t.0, t.1, t.2);
    let (c, r) = (triples(chosen), triples(wrong));
    if c.is_empty() {
        return r.is_empty();
    }
    match pick.part {
        Partition::Seen => !r.iter().any(held),
        Partition::HeldOut => r.first().is_some_and(held),
    }
}

/// "no cats", "one cat", "three cats".
fn cat_phrase(n: usize) -> String {
    match n {
        0 => "no cats".to_string(),
        1 => "one cat".to_string(),
        n => format!("{} cats", NUMBER_WORDS.get(n).copied().unwrap_or("many")),
    }
}

/// The type of a fact stated in a response, for replacing it with another of the same type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Person,
    City,
    Org,
    Food,
    Event,
    /// A job, with its article ("an engineer") or bare (`count(job=engineer)`).
    Job {
        article: bool,
    },
    /// "12 May".
    Date,
    Number,
    /// "no cats", "one cat", "two cats".
    Cats,
}

#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    value: Value,
}

/// Whether `text[i..i + len]` is whole words.
fn whole_word(text: &str, i: usize, len: usize) -> bool {
    let before = text[..i].chars().next_back();
    let after = text[i + len..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// Every fact of `text` (entities of `pick`'s partition, jobs, dates, numbers, cat counts) as
/// whole words, in order; a span inside a longer one is dropped (the "12" of "12 May", the
/// "teacher" of "a teacher").
fn facts_in(text: &str, pick: &Picker) -> Vec<Span> {
    let w = pick.world;
    let mut needles: Vec<(String, Value)> = Vec::new();
    needles.extend(
        pick.people
            .iter()
            .map(|&p| (w.people[p].name(), Value::Person)),
    );
    needles.extend(
        pick.cities
            .iter()
            .map(|&c| (w.cities[c].name.to_string(), Value::City)),
    );
    needles.extend(
        pick.orgs
            .iter()
            .map(|&o| (w.orgs[o].name.to_string(), Value::Org)),
    );
    needles.extend(
        pick.foods
            .iter()
            .map(|&f| (w.foods[f].name.to_string(), Value::Food)),
    );
    needles.extend(
        pick.events
            .iter()
            .map(|&e| (w.events[e].name.to_string(), Value::Event)),
    );
    for job in JOBS {
        needles.push((
            format!("{} {job}", article(job)),
            Value::Job { article: true },
        ));
        needles.push((job.to_string(), Value::Job { article: false }));
    }
    needles.extend((0..=4).map(|n| (cat_phrase(n), Value::Cats)));
    let mut found = Vec::new();
    for (needle, value) in &needles {
        for (i, _) in text.match_indices(needle.as_str()) {
            if whole_word(text, i, needle.len()) {
                found.push(Span {
                    start: i,
                    end: i + needle.len(),
                    value: *value,
                });
            }
        }
    }
    // Numbers, and dates: a number followed by a month.
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if !bytes.get(j).is_some_and(u8::is_ascii_alphabetic) {
            let month = MONTHS.iter().find(|m| {
                text[j..]
                    .strip_prefix(' ')
                    .is_some_and(|r| r.starts_with(**m))
                    && whole_word(text, j + 1, m.len())
            });
            found.push(match month {
                Some(m) => Span {
                    start: i,
                    end: j + 1 + m.len(),
                    value: Value::Date,
                },
                None => Span {
                    start: i,
                    end: j,
                    value: Value::Number,
                },
            });
        }
        i = j;
    }
    let all = found.clone();
    found.retain(|s| {
        !all.iter()
            .any(|o| o.start <= s.start && s.end <= o.end && o.end - o.start > s.end - s.start)
    });
    found.sort_by_key(|s| (s.start, s.end));
    found
}

/// `text` with one of its facts (the last one, or one at random) replaced by another value of
/// the same type from `pick`'s partition; `None` if it states none.
fn wrong_fact(text: &str, pick: &Picker, rng: &mut StdRng, last: bool) -> Option<String> {
    let spans = facts_in(text, pick);
    let span = if last {
        *spans.last()?
    } else {
        *spans.choose(rng)?
    };
    let current = &text[span.start..span.end];
    let new = replacement(span.value, current, pick, rng)?;
    Some(format!("{}{new}{}", &text[..span.start], &text[span.end..]))
}

/// Another value of type `value` than `current`, from `pick`'s partition.
fn replacement(value: Value, current: &str, pick: &Picker, rng: &mut StdRng) -> Option<String> {
    let w = pick.world;
    let names: Vec<String> = match value {
        Value::Person => pick.people.iter().map(|&p| w.people[p].name()).collect(),
        Value::City => pick
            .cities
            .iter()
            .map(|&c| w.cities[c].name.into())
            .collect(),
        Value::Org => pick.orgs.iter().map(|&o| w.orgs[o].name.into()).collect(),
        Value::Food => pick.foods.iter().map(|&f| w.foods[f].name.into()).collect(),
        Value::Event => pick
            .events
            .iter()
            .map(|&e| w.events[e].name.into())
            .collect(),
        Value::Job { article: a } => JOBS
            .iter()
            .map(|j| {
                if a {
                    format!("{} {j}", article(j))
                } else {
                    j.to_string()
                }
            })
            .collect(),
        Value::Cats => (0..=4).map(cat_phrase).collect(),
        Value::Date => {
            let (day, month) = current.split_once(' ')?;
            let day: u32 = day.parse().ok()?;
            if rng.random_bool(0.5) {
                (1..=28)
                    .filter(|&d| d != day)
                    .map(|d| format!("{d} {month}"))
                    .collect()
            } else {
                MONTHS
                    .iter()
                    .filter(|&&m| m != month)
                    .map(|m| format!("{day} {m}"))
                    .collect()
            }
        }
        Value::Number => {
            let n: u64 = current.parse().ok()?;
            if n <= 9 {
                // Digits stay digits: arithmetic requests are over 1 to 9.
                (1..=9).map(|d: u64| d.to_string()).collect()
            } else {
                let d = rng.random_range(1..=9);
                let m = if rng.random_bool(0.5) && n > d {
                    n - d
                } else {
                    n + d
                };
                vec![m.to_string()]
            }
        }
    };
    let others: Vec<&String> = names.iter().filter(|n| n.as_str() != current).collect();
    others.choose(rng).map(|s| s.to_string())
}
