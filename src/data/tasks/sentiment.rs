//! Sentiment classification: reviews of a food, a city or an event, labelled negative or
//! positive. The lexicon is a few adjectives per kind of aspect, and half the reviews turn them
//! around with negation or contrast ("never bland", "... but the pho was great"), so counting
//! positive and negative words does not solve the task.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::data::text::capitalize;
use crate::data::world::{Picker, MONTHS};

/// Adjectives by polarity for one kind of aspect. They are the whole sentiment lexicon.
pub(super) struct Lexicon {
    pub(super) pos: &'static [&'static str],
    pub(super) neg: &'static [&'static str],
}

pub(super) const FOOD_WORDS: Lexicon = Lexicon {
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
pub(super) const SERVICE_WORDS: Lexicon = Lexicon {
    pos: &["friendly", "quick", "kind", "helpful", "great", "excellent"],
    neg: &["rude", "slow", "careless", "unfriendly", "bad", "terrible"],
};
pub(super) const MOOD_WORDS: Lexicon = Lexicon {
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
pub(super) const PLACE_WORDS: Lexicon = Lexicon {
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
