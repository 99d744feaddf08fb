//! # Capstone: multi-head attention with a KV cache
//!
//! Generating T tokens with a decoder by re-running the model on the whole sequence at every
//! step costs O(T²) projections per layer. In a causal model the key and the value of a past
//! token never change (a token only sees the past), so they can be kept: a **KV cache**. Each
//! new token is projected once, its key and value are appended to the cache, and its query
//! attends over everything cached. No mask is needed: the cache holds only the past and the
//! present token. The output must equal full causal attention over the whole sequence.
//!
//! Shapes: C model columns split into NH heads of HS = C / NH columns (head h owns columns
//! h·HS..(h+1)·HS of q, k and v). For the token x_t (C):
//!
//!     q = x_t W_q,  k = x_t W_k,  v = x_t W_v                    (C) each, W_* (C, C)
//!     per head h:  K_h ← [K_h; k_h],  V_h ← [V_h; v_h]           (t + 1, HS)
//!                  out_h = softmax(q_h K_hᵀ / √HS) · V_h          (HS)
//!     out = [out_1, …, out_NH]                                    (C)
//!
//!     one head, C 1, W_q = W_k = W_v = [[1]]: x = [1, 2] → out₀ = 1, out₁ = (e²·1 + e⁴·2)/(e² + e⁴)
//!
//! What it saves: per generated token, one row of projections instead of t + 1; what it costs:
//! 2·L·T·C floats of memory per sequence (`tunelab interview` has the numbers for gpt-tiny).
//!
//! Graded against tunelab's causal attention op (`Tape::attention`) over the whole sequence,
//! token by token and with the cache carried across calls.

use ndarray::{Array1, Array2, ArrayView1};

/// The projections of one attention layer.
#[derive(Debug, Clone)]
pub struct Projections {
    /// W_q, W_k, W_v, each (C, C): x·W gives the C columns of all heads.
    pub wq: Array2<f64>,
    pub wk: Array2<f64>,
    pub wv: Array2<f64>,
    /// NH; C is a multiple of it.
    pub n_head: usize,
}

/// The cached keys and values of one layer: per head, one row per token seen so far.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// keys[h] is (tokens so far, HS).
    pub keys: Vec<Array2<f64>>,
    /// values[h] is (tokens so far, HS).
    pub values: Vec<Array2<f64>>,
}

impl KvCache {
    /// An empty cache for `n_head` heads of `head_size` columns.
    pub fn new(n_head: usize, head_size: usize) -> Self {
        Self {
            keys: vec![Array2::zeros((0, head_size)); n_head],
            values: vec![Array2::zeros((0, head_size)); n_head],
        }
    }

    /// How many tokens the cache holds.
    pub fn len(&self) -> usize {
        self.keys.first().map_or(0, Array2::nrows)
    }

    /// Whether the cache holds no token yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One decoding step: projects the new token `x_t` (C), appends its key and value to `cache`,
/// and returns its attention output (C) over every cached token.
pub fn attend_step(p: &Projections, cache: &mut KvCache, x_t: ArrayView1<'_, f64>) -> Array1<f64> {
    let c = x_t.len();
    let hs = c / p.n_head;
    let (q, k, v) = (x_t.dot(&p.wq), x_t.dot(&p.wk), x_t.dot(&p.wv));
    let mut out = Array1::zeros(c);
    for h in 0..p.n_head {
        let cols = ndarray::s![h * hs..(h + 1) * hs];
        cache.keys[h].push_row(k.slice(cols)).expect("HS columns");
        cache.values[h].push_row(v.slice(cols)).expect("HS columns");
        let scores = cache.keys[h].dot(&q.slice(cols)) / (hs as f64).sqrt();
        let max = scores.fold(f64::NEG_INFINITY, |m, &s| m.max(s));
        let weights = scores.mapv(|s| (s - max).exp());
        let weights = &weights / weights.sum();
        out.slice_mut(cols).assign(&weights.dot(&cache.values[h]));
    }
    out
}

/// The outputs (T, C) for the tokens x (T, C) fed one at a time into an empty cache.
pub fn attend_incremental(p: &Projections, x: &Array2<f64>) -> Array2<f64> {
    let (t, c) = x.dim();
    let mut cache = KvCache::new(p.n_head, c / p.n_head);
    let mut out = Array2::zeros((t, c));
    for (i, row) in x.rows().into_iter().enumerate() {
        out.row_mut(i).assign(&attend_step(p, &mut cache, row));
    }
    out
}
