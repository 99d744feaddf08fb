//! The six use cases of the seed notes as datasets drawn from the [`World`]: sentiment
//! classification, NER, extractive QA, summarization, dialogue and code-like generation.
//!
//! Every split is deterministic in `(world, task, seed)`. Training examples speak only about
//! [`Partition::Seen`] entities (the ones the pre-training corpus knows); validation and test speak
//! only about [`Partition::HeldOut`] ones, so a model must read its input rather than recall facts.
//! [`leaks`] checks that no validation or test text made it into a corpus.
//!
//! Generation examples ([`Example::Generation`]) are meant to be read as `prompt + " " + response`:
//! the prompt ends with a label such as `Summary:`, `Assistant:` or `Code:`, and the response does
//! not start with a space.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::world::{
    article, capitalize, Fact, Mention, Partition, Picker, World, JOBS, MONTHS, NUMBER_WORDS,
};
use crate::error::{Error, Result};

/// Sentiment class names, by label index.
pub const SENTIMENT_LABELS: [&str; 2] = ["negative", "positive"];
/// BIO tags over persons, places, organisations and foods, by tag index.
pub const NER_TAGS: [&str; 9] = [
    "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-FOOD", "I-FOOD",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Sentiment,
    Ner,
    Qa,
    Summarization,
    Dialogue,
    Codegen,
}

impl Task {
    pub fn all() -> [Task; 6] {
        [
            Task::Sentiment,
            Task::Ner,
            Task::Qa,
            Task::Summarization,
            Task::Dialogue,
            Task::Codegen,
        ]
    }

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Task::Sentiment => "sentiment",
            Task::Ner => "ner",
            Task::Qa => "qa",
            Task::Summarization => "summarization",
            Task::Dialogue => "dialogue",
            Task::Codegen => "codegen",
        }
    }

    /// Parses a task name (case-insensitive; a few common aliases such as `classification`,
    /// `summarisation`, `chat` and `code` are accepted).
    pub fn from_name(name: &str) -> Result<Task> {
        let task = match name.trim().to_ascii_lowercase().as_str() {
            "sentiment" | "classification" => Task::Sentiment,
            "ner" => Task::Ner,
            "qa" => Task::Qa,
            "summarization" | "summarisation" => Task::Summarization,
            "dialogue" | "dialog" | "chat" => Task::Dialogue,
            "codegen" | "code" => Task::Codegen,
            _ => {
                let names: Vec<&str> = Task::all().iter().map(|t| t.name()).collect();
                return Err(Error::Invalid {
                    op: "task",
                    detail: format!(
                        "unknown task {name:?}, expected one of {}",
                        names.join(", ")
                    ),
                });
            }
        };
        Ok(task)
    }

    /// Class names (sentiment) or tags (NER), by index; empty for the other tasks.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Task::Sentiment => &SENTIMENT_LABELS,
            Task::Ner => &NER_TAGS,
            _ => &[],
        }
    }

    /// The shape of this task's examples, as the loaders expect it.
    pub fn shape(self) -> TaskShape<'static> {
        match self {
            Task::Sentiment => TaskShape::Classification {
                labels: &SENTIMENT_LABELS,
            },
            Task::Ner => TaskShape::Tagging { tags: &NER_TAGS },
            Task::Qa => TaskShape::Span,
            Task::Summarization | Task::Dialogue | Task::Codegen => TaskShape::Generation,
        }
    }
}

/// Which fields an example has, and the label names that give its integer labels a meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskShape<'a> {
    /// `text`, `label`. `labels[i]` names label `i`; empty means "integer labels only".
    Classification { labels: &'a [&'a str] },
    /// `tokens`, `tags`. `tags` lists the allowed tags; empty means "any tag string".
    Tagging { tags: &'a [&'a str] },
    /// `context`, `question`, `answer` (and the answer's byte offset in the context).
    Span,
    /// `prompt`, `response`.
    Generation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Example {
    Classification {
        text: String,
        label: usize,
    },
    Tagging {
        tokens: Vec<String>,
        tags: Vec<String>,
    },
    Span {
        context: String,
        question: String,
        answer: String,
        /// Byte offset of `answer` in `context`.
        answer_start: usize,
    },
    Generation {
        prompt: String,
        response: String,
    },
}

impl Example {
    /// What the model reads: the key that makes two examples "the same" for de-duplication.
    pub fn input_text(&self) -> String {
        match self {
            Example::Classification { text, .. } => text.clone(),
            Example::Tagging { tokens, .. } => tokens.join(" "),
            Example::Span {
                context, question, ..
            } => format!("{context}\n{question}"),
            Example::Generation { prompt, .. } => prompt.clone(),
        }
    }

    /// "classification", "tagging", "span" or "generation", for error messages.
    pub fn shape_name(&self) -> &'static str {
        match self {
            Example::Classification { .. } => "classification",
            Example::Tagging { .. } => "tagging",
            Example::Span { .. } => "span",
            Example::Generation { .. } => "generation",
        }
    }

    /// The texts of this example that must never occur in a pre-training corpus: its text, the
    /// question and the sentence holding a QA answer, the prompt's content (its lines without
    /// their `User:`-style labels) and the response.
    fn probes(&self) -> Vec<String> {
        match self {
            Example::Classification { text, .. } => vec![text.clone()],
            Example::Tagging { tokens, .. } => vec![detokenize(tokens)],
            Example::Span {
                context,
                question,
                answer_start,
                ..
            } => vec![question.clone(), sentence_at(context, *answer_start)],
            Example::Generation { prompt, response } => vec![unlabel(prompt), response.clone()],
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Splits {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
}

/// How many examples [`build_with`] draws for each split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub train: usize,
    pub validation: usize,
    pub test: usize,
}

impl Default for Sizes {
    /// 2000 / 300 / 300 for every task: enough to fine-tune a small model in minutes, and a test
    /// set large enough that one example moves accuracy by a third of a point.
    fn default() -> Self {
        Sizes {
            train: 2000,
            validation: 300,
            test: 300,
        }
    }
}

/// The splits of `task` with the default [`Sizes`].
pub fn build(task: Task, world: &World, seed: u64) -> Splits {
    build_with(task, world, seed, Sizes::default())
}

/// The splits of `task`: test first, then validation, both from held-out entities and disjoint
/// from each other; then train from seen entities. Classification labels are balanced.
pub fn build_with(task: Task, world: &World, seed: u64, sizes: Sizes) -> Splits {
    let held = Picker::new(world, Partition::HeldOut);
    let seen = Picker::new(world, Partition::Seen);
    let salt = task as u64 + 1;
    let rng = |split: u64| StdRng::seed_from_u64(seed ^ (salt << 32) ^ (split << 48));
    let mut taken = HashSet::new();
    Splits {
        test: split(task, &held, &mut rng(1), sizes.test, &mut taken),
        validation: split(task, &held, &mut rng(2), sizes.validation, &mut taken),
        train: split(task, &seen, &mut rng(3), sizes.train, &mut taken),
    }
}

/// `n` examples whose inputs are not in `taken` when that can be had in a few tries (small
/// held-out pools can run out of distinct texts; then a repeat is better than a short split).
fn split(
    task: Task,
    pick: &Picker,
    rng: &mut StdRng,
    n: usize,
    taken: &mut HashSet<String>,
) -> Vec<Example> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let positive = i % 2 == 1;
        let mut ex = example(task, pick, rng, positive);
        for _ in 0..50 {
            if !taken.contains(&ex.input_text()) {
                break;
            }
            ex = example(task, pick, rng, positive);
        }
        taken.insert(ex.input_text());
        out.push(ex);
    }
    out.shuffle(rng);
    out
}

/// One example of `task`; `positive` chooses the sentiment class so that splits are balanced.
fn example(task: Task, pick: &Picker, rng: &mut StdRng, positive: bool) -> Example {
    match task {
        Task::Sentiment => Example::Classification {
            text: review(pick, rng, positive),
            label: positive as usize,
        },
        Task::Ner => ner(pick, rng),
        Task::Qa => qa(pick, rng),
        Task::Summarization => {
            let (story, summary) = story(pick, rng);
            Example::Generation {
                prompt: format!("Story: {story}\nSummary:"),
                response: summary,
            }
        }
        Task::Dialogue => {
            let turns = dialogue(pick, rng);
            let mut prompt = String::new();
            let (last, context) = turns.split_last().unzip();
            for (user, text) in context.unwrap_or_default() {
                let who = if *user { "User" } else { "Assistant" };
                prompt.push_str(&format!("{who}: {text}\n"));
            }
            prompt.push_str("Assistant:");
            Example::Generation {
                prompt,
                response: last.map(|t| t.1.clone()).unwrap_or_default(),
            }
        }
        Task::Codegen => {
            let (request, code) = code_request(pick, rng);
            Example::Generation {
                prompt: format!("Request: {request}\nCode:"),
                response: code,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sentiment: reviews whose label is not a word count.

/// Adjectives by polarity for one kind of aspect. They are the whole sentiment lexicon.
struct Lexicon {
    pos: &'static [&'static str],
    neg: &'static [&'static str],
}

const FOOD_WORDS: Lexicon = Lexicon {
    pos: &[
        "delicious",
        "tasty",
        "fresh",
        "good",
        "great",
        "excellent",
        "perfect",
    ],
    neg: &[
        "bland", "cold", "stale", "salty", "bad", "awful", "terrible",
    ],
};
const SERVICE_WORDS: Lexicon = Lexicon {
    pos: &["friendly", "quick", "kind", "helpful", "great", "excellent"],
    neg: &["rude", "slow", "careless", "unfriendly", "bad", "terrible"],
};
const MOOD_WORDS: Lexicon = Lexicon {
    pos: &[
        "fun",
        "lively",
        "wonderful",
        "great",
        "pleasant",
        "exciting",
    ],
    neg: &[
        "boring",
        "dull",
        "awful",
        "disappointing",
        "tiring",
        "terrible",
    ],
};
const PLACE_WORDS: Lexicon = Lexicon {
    pos: &["beautiful", "clean", "quiet", "pleasant", "lovely"],
    neg: &["dirty", "noisy", "crowded", "ugly", "awful"],
};

/// A thing a review talks about: "the pho" + "was", judged with `words`.
struct Aspect {
    phrase: String,
    was: &'static str,
    words: &'static Lexicon,
}

impl Aspect {
    fn new(phrase: impl Into<String>, was: &'static str, words: &'static Lexicon) -> Aspect {
        Aspect {
            phrase: phrase.into(),
            was,
            words,
        }
    }
    fn adj(&self, positive: bool, rng: &mut StdRng) -> &'static str {
        let list = if positive {
            self.words.pos
        } else {
            self.words.neg
        };
        list.choose(rng).copied().unwrap_or("good")
    }
    /// "the pho was good", or with two adjectives "the pho was cold and bland".
    fn plain(&self, positive: bool, rng: &mut StdRng) -> String {
        let a = self.adj(positive, rng);
        if rng.random_bool(0.4) {
            let b = self.adj(positive, rng);
            if a != b {
                return format!("{} {} {a} and {b}", self.phrase, self.was);
            }
        }
        format!("{} {} {a}", self.phrase, self.was)
    }
    /// "the pho was not bad": a clause whose polarity is the opposite of its adjective.
    fn negated(&self, positive: bool, rng: &mut StdRng) -> String {
        let a = self.adj(!positive, rng);
        let not = ["not", "never", "not at all"]
            .choose(rng)
            .copied()
            .unwrap_or("not");
        format!("{} {} {not} {a}", self.phrase, self.was)
    }
    fn clause(&self, positive: bool, rng: &mut StdRng) -> String {
        if rng.random_bool(0.5) {
            self.plain(positive, rng)
        } else {
            self.negated(positive, rng)
        }
    }
}

/// A review of a food, a city or an event whose label is `positive`.
///
/// About half the reviews are plain ("The pho was delicious."). The rest defeat word counting:
/// negation flips an adjective ("The pho was never bland."), and in a contrast the clause after
/// "but" (or the main clause after "although") decides ("The service was rude and slow but the
/// pho was great.").
pub(crate) fn review(pick: &Picker, rng: &mut StdRng, positive: bool) -> String {
    let w = pick.world;
    let city = pick.city(rng).name;
    let (intro, main, sides) = match rng.random_range(0..3) {
        0 => {
            let f = pick.food(rng);
            let intro = [
                format!("We had {} at a small cafe in {city}.", f.name),
                format!("I ordered {} for lunch in {city}.", f.name),
                format!("Last night we tried the {}.", f.name),
            ];
            let sides = vec![
                Aspect::new("the service", "was", &SERVICE_WORDS),
                Aspect::new("the waiter", "was", &SERVICE_WORDS),
                Aspect::new("the cafe", "was", &PLACE_WORDS),
            ];
            (
                intro,
                Aspect::new(format!("the {}", f.name), f.was(), &FOOD_WORDS),
                sides,
            )
        }
        1 => {
            let month = MONTHS.choose(rng).copied().unwrap_or("May");
            let intro = [
                format!("I spent a weekend in {city}."),
                format!("We visited {city} in {month}."),
                format!("Our trip to {city} was in {month}."),
            ];
            let sides = vec![
                Aspect::new("the hotel", "was", &SERVICE_WORDS),
                Aspect::new("the old town", "was", &PLACE_WORDS),
                Aspect::new("the night life", "was", &MOOD_WORDS),
            ];
            (intro, Aspect::new(city, "was", &PLACE_WORDS), sides)
        }
        _ => {
            let e = pick.event(rng);
            let ecity = w.cities[e.city].name;
            let intro = [
                format!("Last week I went to the {}.", e.name),
                format!("We went to the {} in {ecity}.", e.name),
                format!("I got tickets for the {} in {ecity}.", e.name),
            ];
            let sides = vec![
                Aspect::new("the music", "was", &MOOD_WORDS),
                Aspect::new("the staff", "was", &SERVICE_WORDS),
                Aspect::new("the place", "was", &PLACE_WORDS),
            ];
            (
                intro,
                Aspect::new(format!("the {}", e.name), "was", &MOOD_WORDS),
                sides,
            )
        }
    };
    let side = sides.choose(rng).unwrap_or(&main);
    // The two aspects of a contrast, in either order.
    let (first, second) = if rng.random_bool(0.5) {
        (&main, side)
    } else {
        (side, &main)
    };
    let opinion = match rng.random_range(0..100) {
        0..40 => format!("{}.", main.plain(positive, rng)),
        40..60 => format!("{}.", main.negated(positive, rng)),
        60..85 => format!(
            "{} but {}.",
            first.plain(!positive, rng),
            second.clause(positive, rng)
        ),
        85..90 => format!(
            "Although {}, {}.",
            first.clause(!positive, rng),
            second.clause(positive, rng)
        ),
        _ => {
            let options: &[&str] = if positive {
                &[
                    "I loved {}.",
                    "I really enjoyed {}.",
                    "I would recommend {} to anyone.",
                ]
            } else {
                &[
                    "I hated {}.",
                    "I did not enjoy {}.",
                    "I would not recommend {} to anyone.",
                ]
            };
            let template = options.choose(rng).copied().unwrap_or("I loved {}.");
            template.replace("{}", &main.phrase)
        }
    };
    let mut sentences = Vec::new();
    if rng.random_bool(0.5) {
        sentences.push(intro.choose(rng).cloned().unwrap_or_default());
    }
    sentences.push(capitalize(&opinion));
    if rng.random_bool(0.3) {
        let closing: &[&str] = if positive {
            &[
                "I will come back.",
                "We would go again.",
                "I would go back any day.",
            ]
        } else {
            &[
                "I will not come back.",
                "We would not go again.",
                "Never again.",
            ]
        };
        sentences.push(closing.choose(rng).copied().unwrap_or_default().to_string());
    }
    sentences.join(" ")
}

/// Corpus text in the style of the sentiment task: one to three reviews, most followed by a
/// rating, as reviews on the web are. The rating's first word already tells its polarity, so a
/// language model that predicts it must read the review's negations and contrasts: this is where
/// a pre-trained base learns the sentiment that fine-tuning then reads out.
pub(crate) fn review_doc(pick: &Picker, rng: &mut StdRng) -> String {
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

// ---------------------------------------------------------------------------------------------
// NER: BIO tags over PER, LOC, ORG and FOOD.

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

fn ner(pick: &Picker, rng: &mut StdRng) -> Example {
    let w = pick.world;
    let p = &w.people[pick.person(rng)];
    let org = &w.orgs[p.org];
    let event = &w.events[*p.events.choose(rng).unwrap_or(&0)];
    let loc2 = other_city(pick, p.city, rng);
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

/// A city of the picker's partition other than `not`, for "moved from A to B".
fn other_city(pick: &Picker, not: usize, rng: &mut StdRng) -> &'static str {
    let others: Vec<usize> = pick.cities.iter().copied().filter(|&c| c != not).collect();
    others
        .choose(rng)
        .map_or("the countryside", |&c| pick.world.cities[c].name)
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

// ---------------------------------------------------------------------------------------------
// QA: a few facts, a question, and the answer's span.

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

/// Two to four facts about one person; the question asks for one of them, and the answer occurs
/// exactly once in the context (examples where it would not are drawn again).
fn qa(pick: &Picker, rng: &mut StdRng) -> Example {
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
            let (sentence, span) = w.fact_sentence(pi, fact, mention, rng);
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

// ---------------------------------------------------------------------------------------------
// Summarization: a short story about one person and its one-line gist.

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
            let old = other_city(pick, p.city, rng);
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

/// Corpus text in the style of summarization: a story and its gist.
pub(crate) fn story_doc(pick: &Picker, rng: &mut StdRng) -> String {
    let (story, summary) = story(pick, rng);
    format!("{story} In short, {summary}")
}

// ---------------------------------------------------------------------------------------------
// Dialogue: user and assistant turns; the last assistant turn is the response.

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

/// Corpus text in the style of dialogue, with other speaker labels than the task's
/// `User:`/`Assistant:`, so that fine-tuning still has a format to teach.
pub(crate) fn dialogue_doc(pick: &Picker, rng: &mut StdRng) -> String {
    dialogue(pick, rng)
        .into_iter()
        .map(|(user, text)| format!("{}: {text}", if user { "Visitor" } else { "Guide" }))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Codegen: an English request and a tiny program that computes the answer.

/// `(request, code)`: arithmetic in words ("What is three plus four, times two?" ->
/// `(3 + 4) * 2`) or a query against the world ("How many people live in Hanoi?" ->
/// `count(lives_in=Hanoi)`). The language is the one [`execute`] evaluates.
pub(crate) fn code_request(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    if rng.random_bool(0.4) {
        arithmetic(pick, rng)
    } else {
        query(pick, rng)
    }
}

fn op_word(op: char) -> &'static str {
    match op {
        '+' => "plus",
        '-' => "minus",
        _ => "times",
    }
}

/// Arithmetic over digits 1-9. Seen-side requests contain no held-out `a op b` step at all;
/// held-out requests start with one, so their text and code never occur in the corpus.
fn arithmetic(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    let w = pick.world;
    let mut last = (String::new(), String::new());
    for _ in 0..1000 {
        let [a, b, c] = [(); 3].map(|_| rng.random_range(1..=9i64));
        let [op1, op2] = [(); 2].map(|_| ['+', '-', '*'].choose(rng).copied().unwrap_or('+'));
        let word = |n: i64| NUMBER_WORDS[n as usize];
        let (request, code) = match rng.random_range(0..3) {
            0 => {
                let request = match (op1, rng.random_bool(0.5)) {
                    ('+', true) => format!("Add {} and {}.", word(a), word(b)),
                    ('-', true) => format!("Subtract {} from {}.", word(b), word(a)),
                    ('*', true) => format!("Multiply {} by {}.", word(a), word(b)),
                    _ => format!("What is {} {} {}?", word(a), op_word(op1), word(b)),
                };
                (request, format!("{a} {op1} {b}"))
            }
            1 => (
                format!(
                    "What is {} {} {}, {} {}?",
                    word(a),
                    op_word(op1),
                    word(b),
                    op_word(op2),
                    word(c)
                ),
                format!("({a} {op1} {b}) {op2} {c}"),
            ),
            _ => {
                let noun = match op1 {
                    '+' => "sum",
                    '-' => "difference",
                    _ => "product",
                };
                (
                    format!(
                        "What is {} {} the {noun} of {} and {}?",
                        word(a),
                        op_word(op2),
                        word(b),
                        word(c)
                    ),
                    format!("{a} {op2} ({b} {op1} {c})"),
                )
            }
        };
        let triples = triples(&code);
        let held = |t: &(i64, char, i64)| w.is_held_out_triple(t.0, t.1, t.2);
        let ok = match pick.part {
            Partition::Seen => !triples.iter().any(held),
            Partition::HeldOut => triples.first().is_some_and(held),
        };
        if ok {
            return (request, code);
        }
        last = (request, code);
    }
    last
}

/// The `a op b` steps of an arithmetic code string as written, parentheses ignored:
/// `2 * (3 + 4)` has the steps `2 * 3` and `3 + 4`.
fn triples(code: &str) -> Vec<(i64, char, i64)> {
    let tokens: Vec<&str> = code
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
        .collect();
    tokens
        .windows(3)
        .filter_map(|t| {
            let a = t[0].parse().ok()?;
            let op = match t[1] {
                "+" => '+',
                "-" => '-',
                "*" => '*',
                _ => return None,
            };
            Some((a, op, t[2].parse().ok()?))
        })
        .collect()
}

/// A question about the world and the query that answers it.
fn query(pick: &Picker, rng: &mut StdRng) -> (String, String) {
    let w = pick.world;
    let p = &w.people[pick.person(rng)];
    let q = &w.people[p.friend];
    let (c, o, f, e) = (
        pick.city(rng),
        pick.org(rng),
        pick.food(rng),
        pick.event(rng),
    );
    let f2 = pick.food(rng);
    let k = rng.random_range(2..=4);
    let kw = NUMBER_WORDS[k];
    match rng.random_range(0..16) {
        0 => (
            format!("How many people live in {}?", c.name),
            format!("count(lives_in={})", c.name),
        ),
        1 => (
            format!("How many people work for {}?", o.name),
            format!("count(works_for={})", o.name),
        ),
        2 => (
            format!("How many people like {}?", f.name),
            format!("count(likes={})", f.name),
        ),
        3 => (
            format!("How many people went to the {}?", e.name),
            format!("count(attended={})", e.name),
        ),
        4 => (
            format!("How many people in {} like {}?", c.name, f.name),
            format!("count(lives_in={}, likes={})", c.name, f.name),
        ),
        5 => (
            format!("How many {}s work for {}?", p.job, o.name),
            format!("count(job={}, works_for={})", p.job, o.name),
        ),
        6 => (
            format!("How old is {}?", p.name()),
            format!("age({})", p.name()),
        ),
        7 => {
            let (old, young) = if p.age >= q.age { (p, q) } else { (q, p) };
            (
                format!("How much older is {} than {}?", old.name(), young.name()),
                format!("age({}) - age({})", old.name(), young.name()),
            )
        }
        8 => (
            format!("What is the total age of {} and {}?", p.name(), q.name()),
            format!("age({}) + age({})", p.name(), q.name()),
        ),
        9 => (
            format!("How much does a plate of {} cost?", f.name),
            format!("price({})", f.name),
        ),
        10 => (
            format!("How much do {kw} plates of {} cost?", f.name),
            format!("price({}) * {k}", f.name),
        ),
        11 if f2.name != f.name => (
            format!("How much do {} and {} cost together?", f.name, f2.name),
            format!("price({}) + price({})", f.name, f2.name),
        ),
        12 => (
            format!("How many cats does {} have?", p.name()),
            format!("cats({})", p.name()),
        ),
        13 => (
            format!(
                "How many cats do {} and {} have together?",
                p.name(),
                q.name()
            ),
            format!("cats({}) + cats({})", p.name(), q.name()),
        ),
        14 => (
            format!("How much is a ticket for the {}?", e.name),
            format!("ticket({})", e.name),
        ),
        _ => (
            format!("How much do {kw} tickets for the {} cost?", e.name),
            format!("ticket({}) * {k}", e.name),
        ),
    }
}

/// Corpus text in the style of codegen: requests, their code, and the value it computes.
pub(crate) fn code_doc(pick: &Picker, rng: &mut StdRng) -> String {
    (0..rng.random_range(2..=3))
        .map(|_| {
            let (request, code) = code_request(pick, rng);
            let value = execute(&code, pick.world).unwrap_or_else(|| "unknown".to_string());
            format!("{request} In code, that is {code}, which gives {value}.")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Evaluates a codegen answer against the world; `None` if it is malformed or names something
/// the world does not have.
///
/// The language: integers, `+ - *`, parentheses, and calls whose arguments are plain text up to
/// the next `,` or `)`: `age(person)`, `cats(person)`, `price(food)`, `ticket(event)` and
/// `count(key=value, ...)` with keys `lives_in`, `works_for`, `likes`, `attended` and `job`
/// (people matching every condition). Names match case-insensitively.
pub fn execute(code: &str, world: &World) -> Option<String> {
    let mut parser = Parser {
        src: code,
        pos: 0,
        depth: 0,
        world,
    };
    let value = parser.expr()?;
    parser.skip_ws();
    (parser.pos == code.len()).then(|| value.to_string())
}

/// Whether a predicted answer computes the same value as the reference (execution accuracy).
/// A reference that does not execute matches nothing.
pub fn same_answer(reference: &str, predicted: &str, world: &World) -> bool {
    match execute(reference, world) {
        Some(v) => execute(predicted, world).as_deref() == Some(v.as_str()),
        None => false,
    }
}

/// Recursive descent over `expr := term (("+"|"-") term)*`, `term := factor ("*" factor)*`,
/// `factor := integer | "(" expr ")" | name "(" args ")"`. Overflow, unknown names and nesting
/// deeper than 64 all give `None`, never a panic.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    world: &'a World,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.src[self.pos..].chars().next()
    }
    fn eat(&mut self, c: char) -> bool {
        let ok = self.peek() == Some(c);
        if ok {
            self.pos += c.len_utf8();
        }
        ok
    }
    fn expr(&mut self) -> Option<i64> {
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        let mut value = self.term()?;
        loop {
            if self.eat('+') {
                value = value.checked_add(self.term()?)?;
            } else if self.eat('-') {
                value = value.checked_sub(self.term()?)?;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(value)
    }
    fn term(&mut self) -> Option<i64> {
        let mut value = self.factor()?;
        while self.eat('*') {
            value = value.checked_mul(self.factor()?)?;
        }
        Some(value)
    }
    fn factor(&mut self) -> Option<i64> {
        let c = self.peek()?;
        if self.eat('(') {
            let value = self.expr()?;
            return self.eat(')').then_some(value);
        }
        let rest = &self.src[self.pos..];
        if c.is_ascii_digit() {
            let len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            self.pos += len;
            return rest[..len].parse().ok();
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..len];
        self.pos += len;
        if name.is_empty() || !self.eat('(') {
            return None;
        }
        let rest = &self.src[self.pos..];
        let close = rest.find(')')?;
        self.pos += close + 1;
        let args: Vec<&str> = rest[..close].split(',').map(str::trim).collect();
        self.call(name, &args)
    }
    fn call(&self, name: &str, args: &[&str]) -> Option<i64> {
        let w = self.world;
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let person = |arg: &str| w.people.iter().find(|p| same(&p.name(), arg));
        match (name, args) {
            ("age", [arg]) => person(arg).map(|p| p.age as i64),
            ("cats", [arg]) => person(arg).map(|p| p.cats as i64),
            ("price", [arg]) => w
                .foods
                .iter()
                .find(|f| same(f.name, arg))
                .map(|f| f.price as i64),
            ("ticket", [arg]) => {
                let arg = arg.strip_prefix("the ").unwrap_or(arg);
                w.events
                    .iter()
                    .find(|e| same(e.name, arg))
                    .map(|e| e.ticket as i64)
            }
            ("count", conditions) => {
                let mut keep = vec![true; w.people.len()];
                for cond in conditions {
                    let (key, value) = cond.split_once('=')?;
                    let (key, value) = (key.trim(), value.trim());
                    for (k, p) in keep.iter_mut().zip(&w.people) {
                        *k &= match key {
                            "lives_in" => same(w.cities[p.city].name, value),
                            "works_for" => same(w.orgs[p.org].name, value),
                            "likes" => same(w.foods[p.food].name, value),
                            "attended" => {
                                let value = value.strip_prefix("the ").unwrap_or(value);
                                p.events.iter().any(|&e| same(w.events[e].name, value))
                            }
                            "job" => same(p.job, value),
                            _ => return None,
                        };
                    }
                    // A name the world does not have is an error, not a count of zero.
                    let known = match key {
                        "lives_in" => w.cities.iter().any(|c| same(c.name, value)),
                        "works_for" => w.orgs.iter().any(|o| same(o.name, value)),
                        "likes" => w.foods.iter().any(|f| same(f.name, value)),
                        "attended" => {
                            let value = value.strip_prefix("the ").unwrap_or(value);
                            w.events.iter().any(|e| same(e.name, value))
                        }
                        _ => JOBS.iter().any(|j| same(j, value)),
                    };
                    if !known {
                        return None;
                    }
                }
                Some(keep.iter().filter(|&&k| k).count() as i64)
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Leak check.

/// The texts of `examples` (each text, QA question and answer sentence, prompt and response) that
/// occur verbatim in some corpus document. Empty means the corpus never showed the model these
/// examples. Speaker and field labels (`User:`, `Visitor:`, `Story:`...) are ignored on both
/// sides, so a conversation leaks whatever labels the corpus gives its turns.
///
/// A word index keeps this fast on a full corpus: a probe can only occur in documents containing
/// its rarest inner word (the first and last words may be cut out of longer corpus words).
pub fn leaks(corpus: &[String], examples: &[Example]) -> Vec<String> {
    let corpus: Vec<String> = corpus.iter().map(|d| unlabel(d)).collect();
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (d, doc) in corpus.iter().enumerate() {
        for word in words(doc) {
            let docs = index.entry(word).or_default();
            if docs.last() != Some(&d) {
                docs.push(d);
            }
        }
    }
    let all: Vec<usize> = (0..corpus.len()).collect();
    let mut found = Vec::new();
    for probe in examples.iter().flat_map(Example::probes) {
        let ws: Vec<&str> = words(&probe).collect();
        let docs = if ws.len() < 3 {
            Some(&all)
        } else {
            ws[1..ws.len() - 1]
                .iter()
                .map(|w| index.get(w))
                .min_by_key(|docs| docs.map_or(0, |d| d.len()))
                .flatten()
        };
        let hit = docs.is_some_and(|docs| docs.iter().any(|&d| corpus[d].contains(&probe)));
        if hit && !found.contains(&probe) {
            found.push(probe);
        }
    }
    found
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The sentence of `context` that contains byte `at`.
fn sentence_at(context: &str, at: usize) -> String {
    let at = at.min(context.len());
    let is_end = |c: char| matches!(c, '.' | '?' | '!');
    let start = context
        .get(..at)
        .and_then(|s| s.rfind(is_end))
        .map_or(0, |i| i + 1);
    let end = context
        .get(at..)
        .and_then(|s| s.find(is_end))
        .map_or(context.len(), |i| at + i + 1);
    context
        .get(start..end)
        .unwrap_or(context)
        .trim()
        .to_string()
}

/// Text without its `User:` / `Story:`-style line labels, lines joined by spaces.
fn unlabel(text: &str) -> String {
    let strip = |line: &'_ str| -> String {
        match line.split_once(':') {
            Some((label, rest)) if !label.is_empty() && label.chars().all(char::is_alphabetic) => {
                rest.trim().to_string()
            }
            _ => line.trim().to_string(),
        }
    };
    let lines: Vec<String> = text.lines().map(strip).filter(|l| !l.is_empty()).collect();
    lines.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::generate(42)
    }

    /// `needle` occurs in `hay` as whole words.
    fn contains_words(hay: &str, needle: &str) -> bool {
        hay.match_indices(needle).any(|(i, _)| {
            let before = hay[..i].chars().next_back();
            let after = hay[i + needle.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    }

    fn all_text(ex: &Example) -> String {
        match ex {
            Example::Span {
                context,
                question,
                answer,
                ..
            } => format!("{context}\n{question}\n{answer}"),
            Example::Generation { prompt, response } => format!("{prompt}\n{response}"),
            other => other.input_text(),
        }
    }

    #[test]
    fn task_names_round_trip() {
        for task in Task::all() {
            assert_eq!(Task::from_name(task.name()).unwrap(), task);
        }
        assert_eq!(
            Task::from_name(" Summarisation ").unwrap(),
            Task::Summarization
        );
        let err = Task::from_name("translation").unwrap_err().to_string();
        assert!(
            err.contains("translation") && err.contains("codegen"),
            "{err}"
        );
        assert_eq!(Task::Sentiment.labels(), ["negative", "positive"]);
        assert_eq!(Task::Ner.labels().len(), 9);
    }

    #[test]
    fn splits_are_deterministic_and_sized() {
        let w = world();
        for task in Task::all() {
            let a = build(task, &w, 5);
            let b = build(task, &w, 5);
            assert_eq!(a.train, b.train, "{task:?}");
            assert_eq!(a.test, b.test, "{task:?}");
            assert_eq!(
                (a.train.len(), a.validation.len(), a.test.len()),
                (2000, 300, 300)
            );
            let c = build(task, &w, 6);
            assert_ne!(a.test, c.test, "{task:?}");
            // Inputs are distinct within and across splits.
            let all: Vec<&Example> = a.train.iter().chain(&a.validation).chain(&a.test).collect();
            let distinct: HashSet<String> = all.iter().map(|e| e.input_text()).collect();
            assert_eq!(distinct.len(), all.len(), "{task:?}");
        }
    }

    #[test]
    fn held_out_entities_stay_out_of_train_and_in_test() {
        let w = world();
        let held = w.held_out_names();
        for task in Task::all() {
            let splits = build(task, &w, 1);
            for ex in &splits.train {
                let text = all_text(ex);
                if let Some(name) = held.iter().find(|n| contains_words(&text, n)) {
                    panic!("{task:?}: held-out {name:?} in train example {text:?}");
                }
            }
            for ex in splits.test.iter().chain(&splits.validation) {
                let text = all_text(ex);
                let named = held.iter().any(|n| contains_words(&text, n));
                let held_arith = match ex {
                    Example::Generation { response, .. } => triples(response)
                        .first()
                        .is_some_and(|t| w.is_held_out_triple(t.0, t.1, t.2)),
                    _ => false,
                };
                assert!(
                    named || held_arith,
                    "{task:?}: nothing held out in {text:?}"
                );
            }
        }
    }

    #[test]
    fn corpus_contains_no_validation_or_test_example() {
        let w = world();
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

    /// Every word of the sentiment lexicon with its polarity.
    fn lexicon() -> HashMap<&'static str, i32> {
        let mut lex = HashMap::new();
        for l in [&FOOD_WORDS, &SERVICE_WORDS, &MOOD_WORDS, &PLACE_WORDS] {
            lex.extend(l.pos.iter().map(|w| (*w, 1)));
            lex.extend(l.neg.iter().map(|w| (*w, -1)));
        }
        lex.extend([
            ("loved", 1),
            ("enjoyed", 1),
            ("enjoy", 1),
            ("recommend", 1),
            ("hated", -1),
        ]);
        lex
    }

    fn polarity(text: &str, lex: &HashMap<&str, i32>) -> i32 {
        text.split(|c: char| !c.is_alphanumeric())
            .map(|w| lex.get(w.to_lowercase().as_str()).copied().unwrap_or(0))
            .sum()
    }

    #[test]
    fn sentiment_is_balanced_and_not_a_word_count() {
        let w = world();
        let lex = lexicon();
        let splits = build(Task::Sentiment, &w, 3);
        let mut labels_of: HashMap<String, usize> = HashMap::new();
        for split in [&splits.train, &splits.validation, &splits.test] {
            let pos = split
                .iter()
                .filter(|e| matches!(e, Example::Classification { label: 1, .. }))
                .count();
            assert_eq!(pos * 2, split.len());
            // Counting polarity words, with the best tie-break, is clearly below perfect...
            let (mut right_pos, mut right_neg, mut rule_right) = (0, 0, 0);
            for ex in split {
                let Example::Classification { text, label } = ex else {
                    panic!("not a classification example")
                };
                let score = polarity(text, &lex);
                let truth = *label == 1;
                right_pos += ((score >= 0) == truth) as usize;
                right_neg += ((score > 0) == truth) as usize;
                // ...while a rule that reads negation and "but"/"although" gets every label.
                let opinion = text
                    .split_inclusive(['.'])
                    .map(str::trim)
                    .find(|s| {
                        s.split(|c: char| !c.is_alphanumeric())
                            .any(|w| lex.contains_key(w.to_lowercase().as_str()))
                    })
                    .unwrap_or(text);
                let clause = match (opinion.rfind(" but "), opinion.starts_with("Although")) {
                    (Some(i), _) => &opinion[i..],
                    (None, true) => opinion.split_once(", ").map_or(opinion, |x| x.1),
                    _ => opinion,
                };
                let negated = clause.contains(" not ") || clause.contains(" never ");
                let rule = (polarity(clause, &lex) > 0) != negated;
                if rule != truth {
                    eprintln!(
                        "RULE {text:?} {label} {clause:?} {}",
                        polarity(clause, &lex)
                    );
                }
                rule_right += (rule == truth) as usize;
                assert_eq!(*labels_of.entry(text.clone()).or_insert(*label), *label);
            }
            let bow = right_pos.max(right_neg) as f64 / split.len() as f64;
            assert!(bow < 0.8, "bag-of-words accuracy {bow}");
            assert_eq!(rule_right, split.len());
        }
    }

    #[test]
    fn ner_tags_are_valid_bio() {
        let w = world();
        let splits = build(Task::Ner, &w, 4);
        let mut multi_word = 0;
        for ex in splits.train.iter().chain(&splits.test) {
            let Example::Tagging { tokens, tags } = ex else {
                panic!("not a tagging example")
            };
            assert_eq!(tokens.len(), tags.len());
            assert!(tags.iter().any(|t| t != "O"), "{tokens:?}");
            for (i, tag) in tags.iter().enumerate() {
                assert!(NER_TAGS.contains(&tag.as_str()), "{tag}");
                if let Some(kind) = tag.strip_prefix("I-") {
                    assert!(i > 0 && tags[i - 1].ends_with(kind), "{tokens:?} {tags:?}");
                    multi_word += 1;
                }
            }
        }
        assert!(multi_word > 1000, "{multi_word} inside-entity tokens");
    }

    #[test]
    fn qa_spans_point_at_their_answers() {
        let w = world();
        let splits = build(Task::Qa, &w, 5);
        for ex in splits
            .train
            .iter()
            .chain(&splits.validation)
            .chain(&splits.test)
        {
            let Example::Span {
                context,
                question,
                answer,
                answer_start,
            } = ex
            else {
                panic!("not a span example")
            };
            assert_eq!(&context[*answer_start..answer_start + answer.len()], answer);
            assert_eq!(
                context.matches(answer.as_str()).count(),
                1,
                "{context} / {answer}"
            );
            let sentences = context.matches(['.', '?']).count();
            assert!((2..=4).contains(&sentences), "{context}");
            assert!(question.ends_with('?'));
        }
    }

    #[test]
    fn stories_and_dialogues_are_well_formed() {
        let w = world();
        for ex in build(Task::Summarization, &w, 6).test {
            let Example::Generation { prompt, response } = ex else {
                panic!("not a generation example")
            };
            let story = prompt
                .strip_prefix("Story: ")
                .and_then(|s| s.strip_suffix("\nSummary:"))
                .expect("story prompt format");
            assert!((3..=6).contains(&story.matches('.').count()), "{story}");
            assert_eq!(response.matches('.').count(), 1, "{response}");
            // Every name in the summary comes from the story.
            for word in response
                .split([' ', '.'])
                .filter(|w| w.starts_with(char::is_uppercase))
            {
                assert!(
                    story.contains(word),
                    "{word:?} of {response:?} not in {story:?}"
                );
            }
        }
        for ex in build(Task::Dialogue, &w, 6).test {
            let Example::Generation { prompt, response } = ex else {
                panic!("not a generation example")
            };
            assert!(
                prompt.starts_with("User: ") && prompt.ends_with("\nAssistant:"),
                "{prompt}"
            );
            assert!(!response.is_empty() && !response.contains('\n') && !response.starts_with(' '));
        }
    }

    #[test]
    fn codegen_references_execute_and_wrong_answers_do_not_match() {
        let w = world();
        let splits = build(Task::Codegen, &w, 7);
        let (mut arithmetic, mut queries) = (0, 0);
        for ex in splits
            .train
            .iter()
            .chain(&splits.validation)
            .chain(&splits.test)
        {
            let Example::Generation { prompt, response } = ex else {
                panic!("not a generation example")
            };
            assert!(prompt.starts_with("Request: ") && prompt.ends_with("\nCode:"));
            assert!(
                execute(response, &w).is_some(),
                "{response} does not execute"
            );
            assert!(same_answer(response, response, &w));
            assert!(!same_answer(response, &format!("{response} + 1"), &w));
            if triples(response).is_empty() {
                queries += 1;
            } else {
                arithmetic += 1;
            }
        }
        assert!(
            arithmetic > 500 && queries > 500,
            "{arithmetic} / {queries}"
        );
        // Worked cases.
        assert_eq!(execute("(3 + 4) * 2", &w).as_deref(), Some("14"));
        assert_eq!(execute("2 - 3 * 3", &w).as_deref(), Some("-7"));
        assert!(same_answer("(3 + 4) * 2", "2 * (4 + 3)", &w));
        assert!(same_answer("(3 + 4) * 2", "14", &w));
        assert!(!same_answer("(3 + 4) * 2", "3 + 4 * 2", &w));
        let p = &w.people[0];
        let city = w.cities[p.city].name;
        let n = w.people.iter().filter(|q| q.city == p.city).count();
        assert_eq!(
            execute(&format!("count(lives_in={city})"), &w),
            Some(n.to_string())
        );
        assert_eq!(
            execute(
                &format!("count(lives_in={}, job={})", city.to_uppercase(), p.job),
                &w
            ),
            Some(
                w.people
                    .iter()
                    .filter(|q| q.city == p.city && q.job == p.job)
                    .count()
                    .to_string()
            )
        );
        assert_eq!(
            execute(&format!("age({})", p.name()), &w),
            Some(p.age.to_string())
        );
        // Malformed or unknown: None, never a panic.
        for bad in [
            "",
            "3 +",
            "(3 + 4",
            "3 + 4)",
            "age(Nobody Here)",
            "count(lives_in=Atlantis)",
            "count(color=red)",
            "price()",
            "foo(1)",
            "99999999999999999999",
            "9223372036854775807 + 1",
            "3 / 4",
            "age(",
            &"(".repeat(10_000),
        ] {
            assert_eq!(execute(bad, &w), None, "{bad:?}");
        }
        assert!(!same_answer("age(Nobody)", "age(Nobody)", &w));
    }
}
