//! Retrieval: BM25 over a set of passages, written plainly. The retriever of a
//! retrieval-augmented pipeline (retrieve the passages that best match a question, then let a
//! reader answer from them), the baseline fine-tuning is compared against for knowledge.
//!
//! Text is split into lower-case words (letters and digits; everything else separates). For a
//! query q and a passage d with |d| words, BM25 (Robertson and Zaragoza's Okapi BM25, the
//! default of Lucene and Elasticsearch) scores
//!
//! ```text
//! score(q, d) = Σ_{w ∈ q} idf(w) · f(w, d)·(k1 + 1) / (f(w, d) + k1·(1 − b + b·|d| / avgdl))
//! idf(w)      = ln(1 + (N − n(w) + 0.5) / (n(w) + 0.5))
//! ```
//!
//! f(w, d) the count of w in d, N the number of passages, n(w) those containing w, avgdl the
//! mean passage length; k1 = 1.2 bounds how much repeating a word helps and b = 0.75 how much a
//! long passage is penalised. A word in every passage ("the", "does") gets an idf near 0, so names
//! and rare words decide the ranking. Ties go to the earlier passage.

use std::collections::HashMap;

/// BM25's term-frequency saturation.
pub const K1: f64 = 1.2;
/// BM25's length normalisation.
pub const B: f64 = 0.75;

/// Lower-case words of `text`: maximal runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A BM25 index over passages.
#[derive(Debug, Clone)]
pub struct Bm25 {
    /// Per passage: word counts and length in words.
    counts: Vec<HashMap<String, usize>>,
    lengths: Vec<usize>,
    /// Passages containing each word.
    df: HashMap<String, usize>,
    avgdl: f64,
}

impl Bm25 {
    /// Indexes `passages` (their order is their id).
    pub fn new<S: AsRef<str>>(passages: &[S]) -> Self {
        let mut counts = Vec::with_capacity(passages.len());
        let mut lengths = Vec::with_capacity(passages.len());
        let mut df: HashMap<String, usize> = HashMap::new();
        for p in passages {
            let ws = words(p.as_ref());
            lengths.push(ws.len());
            let mut c: HashMap<String, usize> = HashMap::new();
            for w in ws {
                *c.entry(w).or_default() += 1;
            }
            for w in c.keys() {
                *df.entry(w.clone()).or_default() += 1;
            }
            counts.push(c);
        }
        let avgdl = lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64;
        Self {
            counts,
            lengths,
            df,
            avgdl,
        }
    }

    /// Passages indexed.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// idf(w): ln(1 + (N − n + 0.5) / (n + 0.5)); a word in no passage gets the largest.
    pub fn idf(&self, word: &str) -> f64 {
        let n = self.len() as f64;
        let nw = self.df.get(word).copied().unwrap_or(0) as f64;
        (1.0 + (n - nw + 0.5) / (nw + 0.5)).ln()
    }

    /// BM25 score of passage `d` for `query` (0 for a passage id out of range).
    pub fn score(&self, query: &str, d: usize) -> f64 {
        self.score_words(&words(query), d)
    }

    fn score_words(&self, query: &[String], d: usize) -> f64 {
        let (Some(c), Some(&len)) = (self.counts.get(d), self.lengths.get(d)) else {
            return 0.0;
        };
        let norm = K1 * (1.0 - B + B * len as f64 / self.avgdl.max(f64::MIN_POSITIVE));
        query
            .iter()
            .map(|w| {
                let f = c.get(w).copied().unwrap_or(0) as f64;
                if f == 0.0 {
                    0.0
                } else {
                    self.idf(w) * f * (K1 + 1.0) / (f + norm)
                }
            })
            .sum()
    }

    /// The `k` best passages for `query`, best first, as (id, score); passages that share no
    /// word with the query are left out.
    pub fn search(&self, query: &str, k: usize) -> Vec<(usize, f64)> {
        let q = words(query);
        let mut hits: Vec<(usize, f64)> = (0..self.len())
            .map(|d| (d, self.score_words(&q, d)))
            .filter(|&(_, s)| s > 0.0)
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }
}
