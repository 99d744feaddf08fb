//! Code-like generation: an English request and a tiny program that computes its answer, either
//! arithmetic over digits or a query against the world, and the evaluator ([`execute`]) that scores
//! predictions by the value they compute ([`same_answer`]).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::data::world::{Partition, Picker, World, JOBS, NUMBER_WORDS};

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
pub(crate) fn triples(code: &str) -> Vec<(i64, char, i64)> {
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
