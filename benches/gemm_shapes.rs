//! The matrix products of one training step of the benchmark GPT (`tunelab::lab::bench`:
//! B·T = 1024 rows, V = 4096, T = 128, head size 64), with the operand layouts the ops hand the
//! kernels: weights (in, out) used as is forward, transposed views in backward (G·Wᵀ for the input
//! gradient, Xᵀ·G for the weight gradient), the tied LM head as a transposed view of wte (V, C).
//! Shared by `kernels.rs` (criterion) and `matmul_table.rs` (a quick table).

#![allow(dead_code)]

use ndarray::{Array2, ArrayView2};

pub fn matrix(m: usize, n: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((m, n), |(i, j)| {
        (((i * 31 + j * 17 + seed * 7) % 23) as f32 - 11.0) / 23.0
    })
}

/// Whether an operand is used as stored or as a transposed view of a stored matrix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

/// One product C (m, n) = op(A) (m, k) · op(B) (k, n), accumulated (`beta = 1`) like the
/// backward pass's gradients, or written (`beta = 0`).
#[derive(Clone)]
pub struct Shape {
    pub group: &'static str,
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: Op,
    pub tb: Op,
    pub accumulate: bool,
}

impl Shape {
    fn new(
        group: &'static str,
        name: &str,
        (m, k, n): (usize, usize, usize),
        ta: Op,
        tb: Op,
    ) -> Self {
        Shape {
            group,
            name: name.to_string(),
            m,
            k,
            n,
            ta,
            tb,
            accumulate: false,
        }
    }

    fn acc(mut self) -> Self {
        self.accumulate = true;
        self
    }

    pub fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }

    /// "A(1024,256)·Bᵀ(256,4096)": op(A)'s and op(B)'s shapes, ᵀ for a transposed view.
    pub fn dims(&self) -> String {
        let t = |o: Op| if o == Op::T { "ᵀ" } else { "" };
        format!(
            "A{}({},{})·B{}({},{})",
            t(self.ta),
            self.m,
            self.k,
            t(self.tb),
            self.k,
            self.n
        )
    }

    pub fn id(&self) -> String {
        format!("{} {}", self.name, self.dims())
    }

    /// The operands' storage: A is stored (m, k), or (k, m) when used transposed; B likewise.
    pub fn operands(&self) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
        let a = match self.ta {
            Op::N => matrix(self.m, self.k, 1),
            Op::T => matrix(self.k, self.m, 1),
        };
        let b = match self.tb {
            Op::N => matrix(self.k, self.n, 2),
            Op::T => matrix(self.n, self.k, 2),
        };
        (a, b, matrix(self.m, self.n, 3))
    }
}

pub fn view(x: &Array2<f32>, o: Op) -> ArrayView2<'_, f32> {
    match o {
        Op::N => x.view(),
        Op::T => x.t(),
    }
}

/// Forward and backward products of one block and of the LM head at width `c`.
pub fn training(c: usize) -> Vec<Shape> {
    use Op::{N, T};
    let (r, v) = (1024, 4096);
    let g: &'static str = if c == 256 { "gpt_d256" } else { "gpt_d512" };
    vec![
        // Forward: X (1024, C) · W (C, out).
        Shape::new(g, "qkv", (r, c, 3 * c), N, N),
        Shape::new(g, "attn_out", (r, c, c), N, N),
        Shape::new(g, "fc", (r, c, 4 * c), N, N),
        Shape::new(g, "proj", (r, 4 * c, c), N, N),
        Shape::new(g, "lm_head", (r, c, v), N, T),
        // Input gradients: G (1024, out) · Wᵀ (out, in).
        Shape::new(g, "dx_qkv", (r, 3 * c, c), N, T).acc(),
        Shape::new(g, "dx_fc", (r, 4 * c, c), N, T).acc(),
        Shape::new(g, "dx_proj", (r, c, 4 * c), N, T).acc(),
        Shape::new(g, "dx_lm_head", (r, v, c), N, N).acc(),
        // Weight gradients: Xᵀ (in, 1024) · G (1024, out).
        Shape::new(g, "dw_qkv", (c, r, 3 * c), T, N).acc(),
        Shape::new(g, "dw_attn_out", (c, r, c), T, N).acc(),
        Shape::new(g, "dw_fc", (c, r, 4 * c), T, N).acc(),
        Shape::new(g, "dw_proj", (4 * c, r, c), T, N).acc(),
        // The tied head's weight gradient, (V, C) = Gᵀ (V, 1024) · X (1024, C).
        Shape::new(g, "dwte_lm_head", (v, r, c), T, N).acc(),
    ]
}

/// The low-rank products of LoRA r = 8 at width `c` (x A, then (x A) B; and their gradients).
pub fn lora(c: usize) -> Vec<Shape> {
    use Op::{N, T};
    let (r, rank) = (1024, 8);
    let g: &'static str = if c == 256 { "lora_d256" } else { "lora_d512" };
    vec![
        Shape::new(g, "x·A", (r, c, rank), N, N),
        Shape::new(g, "xA·B", (r, rank, c), N, N),
        Shape::new(g, "dB (xA)ᵀ·G", (rank, r, c), T, N).acc(),
        Shape::new(g, "d(xA) G·Bᵀ", (r, c, rank), N, T),
        Shape::new(g, "dA xᵀ·d(xA)", (c, r, rank), T, N).acc(),
        Shape::new(g, "dx d(xA)·Aᵀ", (r, rank, c), N, T).acc(),
    ]
}

/// One (batch entry, head) of attention, T = 128, head size 64: forward and backward.
pub fn attention() -> Vec<Shape> {
    use Op::{N, T};
    let g = "attention_head";
    vec![
        Shape::new(g, "scores q·kᵀ", (128, 64, 128), N, T),
        Shape::new(g, "out p·v", (128, 128, 64), N, N),
        Shape::new(g, "dp g·vᵀ", (128, 64, 128), N, T),
        Shape::new(g, "dv pᵀ·g", (128, 128, 64), T, N).acc(),
        Shape::new(g, "dq ds·k", (128, 128, 64), N, N).acc(),
        Shape::new(g, "dk dsᵀ·q", (128, 128, 64), T, N).acc(),
    ]
}

pub fn squares() -> Vec<Shape> {
    [256, 512, 1024, 2048]
        .into_iter()
        .map(|n| Shape::new("square", &n.to_string(), (n, n, n), Op::N, Op::N))
        .collect()
}
