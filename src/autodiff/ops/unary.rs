//! Elementwise functions of one tensor: scale, activations (GELU in both forms, ReLU, tanh,
//! sigmoid) and the few plain functions the methods need (square, sqrt, exp, log).
//!
//! Backward is dX = G · f'(x); where f' is cheaper from the output y it uses y
//! (tanh: 1 − y², sigmoid: y(1 − y), exp: y, sqrt: 1 / 2y).
//!
//! [`Unary::f`] and [`Unary::df`] are the whole definition, one element at a time. The op runs
//! them over contiguous slices with the choice of function taken outside the loop
//! ([`map_slice`], [`grad_slice`]), so each function is a plain loop that the compiler
//! vectorises; the exponentials inside GELU, sigmoid and exp are [`Float::exp_fast`] for that
//! reason (libm's `expf` is a call per element).

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, Result};
use crate::kernels::for_each_piece;
use crate::tensor::Float;
use ndarray::{ArrayD, ArrayViewD, Zip};

/// Which function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `c · x`.
    Scale(f64),
    /// GPT-2's GELU: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).
    GeluTanh,
    /// BERT's exact GELU: x Φ(x) = 0.5 x (1 + erf(x / √2)).
    GeluErf,
    Relu,
    Tanh,
    Sigmoid,
    Square,
    Sqrt,
    Exp,
    Log,
    /// log σ(x) = −softplus(−x), computed as min(x, 0) − ln(1 + e^(−|x|)) so that it neither
    /// overflows nor loses precision for large |x| (the preference losses' −log σ(β·margin)).
    LogSigmoid,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Unary {
    pub fn name(self) -> &'static str {
        match self {
            Unary::Scale(_) => "scale",
            Unary::GeluTanh => "gelu_tanh",
            Unary::GeluErf => "gelu_erf",
            Unary::Relu => "relu",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Square => "square",
            Unary::Sqrt => "sqrt",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::LogSigmoid => "log_sigmoid",
        }
    }

    /// f(x).
    #[inline(always)]
    pub fn f<F: Float>(self, x: F) -> F {
        let half = F::of(0.5);
        match self {
            Unary::Scale(c) => F::of(c) * x,
            Unary::GeluTanh => {
                half * x
                    * (F::one()
                        + fast_tanh(F::of(SQRT_2_OVER_PI) * (x + F::of(0.044715) * x * x * x)))
            }
            Unary::GeluErf => half * x * (F::one() + (x * F::of(INV_SQRT_2)).erf()),
            Unary::Relu => x.max(F::zero()),
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => F::one() / (F::one() + (-x).exp_fast()),
            Unary::Square => x * x,
            Unary::Sqrt => x.sqrt(),
            Unary::Exp => x.exp_fast(),
            Unary::Log => x.ln(),
            Unary::LogSigmoid => x.min(F::zero()) - (-x.abs()).exp().ln_1p(),
        }
    }

    /// Which of x and y = f(x) [`Unary::df`] reads.
    pub fn reads(self) -> (bool, bool) {
        match self {
            Unary::Scale(_) => (false, false),
            Unary::GeluTanh
            | Unary::GeluErf
            | Unary::Relu
            | Unary::Square
            | Unary::Log
            | Unary::LogSigmoid => (true, false),
            Unary::Tanh | Unary::Sigmoid | Unary::Sqrt | Unary::Exp => (false, true),
        }
    }

    /// f'(x), given x and y = f(x).
    #[inline(always)]
    pub fn df<F: Float>(self, x: F, y: F) -> F {
        let half = F::of(0.5);
        match self {
            Unary::Scale(c) => F::of(c),
            Unary::GeluTanh => {
                let k = F::of(SQRT_2_OVER_PI);
                let a = F::of(0.044715);
                let th = fast_tanh(k * (x + a * x * x * x));
                half * (F::one() + th)
                    + half * x * (F::one() - th * th) * k * (F::one() + F::of(3.0) * a * x * x)
            }
            Unary::GeluErf => {
                let cdf = half * (F::one() + (x * F::of(INV_SQRT_2)).erf());
                let pdf = F::of(INV_SQRT_2PI) * (-half * x * x).exp_fast();
                cdf + x * pdf
            }
            Unary::Relu => {
                if x > F::zero() {
                    F::one()
                } else {
                    F::zero()
                }
            }
            Unary::Tanh => F::one() - y * y,
            Unary::Sigmoid => y * (F::one() - y),
            Unary::Square => F::of(2.0) * x,
            Unary::Sqrt => half / y,
            Unary::Exp => y,
            Unary::Log => F::one() / x,
            // d/dx log σ(x) = 1 − σ(x) = σ(−x).
            Unary::LogSigmoid => F::one() / (F::one() + x.exp()),
        }
    }
}

/// tanh through one exp: 1 − 2 / (1 + e^(2u)). libm's tanhf is several times slower, and GELU
/// evaluates it for every MLP activation. Saturates correctly (e^(2u) → ∞ gives 1, → 0 gives −1).
#[inline(always)]
fn fast_tanh<F: Float>(u: F) -> F {
    F::one() - F::of(2.0) / (F::one() + (u + u).exp_fast())
}

/// Runs `$body` with `$u` bound to `$f` as a constant of each variant, so that in every arm the
/// inlined `f` / `df` has no `match` left and the loop in `$body` vectorises.
macro_rules! specialised {
    ($f:expr, $u:ident => $body:expr) => {
        match $f {
            Unary::Scale(c) => {
                let $u = Unary::Scale(c);
                $body
            }
            Unary::GeluTanh => {
                let $u = Unary::GeluTanh;
                $body
            }
            Unary::GeluErf => {
                let $u = Unary::GeluErf;
                $body
            }
            Unary::Relu => {
                let $u = Unary::Relu;
                $body
            }
            Unary::Tanh => {
                let $u = Unary::Tanh;
                $body
            }
            Unary::Sigmoid => {
                let $u = Unary::Sigmoid;
                $body
            }
            Unary::Square => {
                let $u = Unary::Square;
                $body
            }
            Unary::Sqrt => {
                let $u = Unary::Sqrt;
                $body
            }
            Unary::Exp => {
                let $u = Unary::Exp;
                $body
            }
            Unary::Log => {
                let $u = Unary::Log;
                $body
            }
            Unary::LogSigmoid => {
                let $u = Unary::LogSigmoid;
                $body
            }
        }
    };
}

/// y = f(x) over a slice: the same values as `f` element by element, in a vectorised loop.
pub fn map_slice<F: Float>(f: Unary, x: &[F], y: &mut [F]) {
    assert_eq!(x.len(), y.len());
    specialised!(f, u => {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = u.f(x);
        }
    })
}

/// dx = g · f'(x) over slices, given y = f(x): the same values as `df` element by element.
pub fn grad_slice<F: Float>(f: Unary, g: &[F], x: &[F], y: &[F], dx: &mut [F]) {
    assert!(g.len() == dx.len() && x.len() == dx.len() && y.len() == dx.len());
    specialised!(f, u => {
        for (((d, &g), &x), &y) in dx.iter_mut().zip(g).zip(x).zip(y) {
            *d = g * u.df(x, y);
        }
    })
}

/// Large contiguous tensors are mapped in pieces of this many elements over the kernel threads.
const ELEMS_PER_PIECE: usize = 1 << 14;

struct UnaryOp {
    f: Unary,
    x: Var,
}

impl<F: Float> Backward<F> for UnaryOp {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        let (x, y) = self.f.reads();
        Saves {
            inputs: if x { vec![self.x] } else { Vec::new() },
            output: y,
        }
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let (f, x) = (self.f, self.x);
        // f' reads x, y or neither; what it does not read stands in for what it does.
        let (xv, y) = match f.reads() {
            (true, true) => (ctx.value(x), y),
            (true, false) => (ctx.value(x), ctx.value(x)),
            (false, true) => (y.clone(), y),
            (false, false) => (g.view(), g.view()),
        };
        let dx = match (g.as_slice(), xv.as_slice(), y.as_slice()) {
            (Some(gs), Some(xs), Some(ys)) => {
                let mut dx = ArrayD::<F>::zeros(g.raw_dim());
                let d = dx.as_slice_mut().expect("new array");
                if gs.len() >= 2 * ELEMS_PER_PIECE {
                    let pieces: Vec<_> = d
                        .chunks_mut(ELEMS_PER_PIECE)
                        .zip(gs.chunks(ELEMS_PER_PIECE))
                        .zip(xs.chunks(ELEMS_PER_PIECE))
                        .zip(ys.chunks(ELEMS_PER_PIECE))
                        .collect();
                    for_each_piece(pieces, |(((d, g), x), y)| grad_slice(f, g, x, y, d));
                } else {
                    grad_slice(f, gs, xs, ys, d);
                }
                dx
            }
            _ => {
                let mut dx = g.clone();
                Zip::from(&mut dx)
                    .and(&xv)
                    .and(&y)
                    .for_each(|d, &xi, &yi| *d *= f.df(xi, yi));
                dx
            }
        };
        ctx.accumulate(x, dx);
    }
}

impl<F: Float> Tape<'_, F> {
    /// Applies an elementwise function.
    pub fn unary(&mut self, f: Unary, x: Var) -> Result<Var> {
        let xv = self.value(x);
        let y = match xv.as_slice() {
            Some(xs) => {
                let mut y = ArrayD::<F>::zeros(xv.raw_dim());
                let ys = y.as_slice_mut().expect("new array");
                if xs.len() >= 2 * ELEMS_PER_PIECE {
                    let pieces: Vec<_> = ys
                        .chunks_mut(ELEMS_PER_PIECE)
                        .zip(xs.chunks(ELEMS_PER_PIECE))
                        .collect();
                    for_each_piece(pieces, |(y, x)| map_slice(f, x, y));
                } else {
                    map_slice(f, xs, ys);
                }
                y
            }
            _ => xv.mapv(|v| f.f(v)),
        };
        Ok(self.push(f.name(), y, &[x], UnaryOp { f, x }))
    }

    /// `c · x`.
    pub fn scale(&mut self, x: Var, c: f64) -> Result<Var> {
        self.unary(Unary::Scale(c), x)
    }

    /// GELU, tanh approximation (GPT-2).
    pub fn gelu_tanh(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::GeluTanh, x)
    }

    /// GELU, exact erf form (BERT).
    pub fn gelu_erf(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::GeluErf, x)
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::Relu, x)
    }

    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::Tanh, x)
    }

    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::Sigmoid, x)
    }

    /// log σ(x), stable for any x.
    pub fn log_sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::LogSigmoid, x)
    }

    pub fn square(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::Square, x)
    }

    /// Square root; inputs must be non-negative.
    pub fn sqrt(&mut self, x: Var) -> Result<Var> {
        if self.value(x).iter().any(|&v| v < F::zero()) {
            return invalid("sqrt", "negative input");
        }
        self.unary(Unary::Sqrt, x)
    }

    pub fn exp(&mut self, x: Var) -> Result<Var> {
        self.unary(Unary::Exp, x)
    }

    /// Natural log; inputs must be positive.
    pub fn log(&mut self, x: Var) -> Result<Var> {
        if self.value(x).iter().any(|&v| v <= F::zero()) {
            return invalid("log", "non-positive input");
        }
        self.unary(Unary::Log, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Unary; 11] = [
        Unary::Scale(-1.5),
        Unary::GeluTanh,
        Unary::GeluErf,
        Unary::Relu,
        Unary::Tanh,
        Unary::Sigmoid,
        Unary::Square,
        Unary::Sqrt,
        Unary::Exp,
        Unary::Log,
        Unary::LogSigmoid,
    ];

    /// The vectorised slice loops give exactly `f` and `df` element by element (f32, over
    /// −8..8, and positive inputs for sqrt and log).
    #[test]
    fn slice_loops_equal_the_elementwise_definition() {
        for f in ALL {
            let positive = matches!(f, Unary::Sqrt | Unary::Log);
            let x: Vec<f32> = (0..1003)
                .map(|i| {
                    let v = (i as f32 - 501.0) / 62.5;
                    if positive {
                        v.abs() + 1e-3
                    } else {
                        v
                    }
                })
                .collect();
            let g: Vec<f32> = (0..x.len()).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
            let mut y = vec![0.0; x.len()];
            map_slice(f, &x, &mut y);
            let mut dx = vec![0.0; x.len()];
            grad_slice(f, &g, &x, &y, &mut dx);
            for i in 0..x.len() {
                assert_eq!(y[i].to_bits(), f.f(x[i]).to_bits(), "{f:?} f({})", x[i]);
                let want = g[i] * f.df(x[i], y[i]);
                assert_eq!(dx[i].to_bits(), want.to_bits(), "{f:?} df({})", x[i]);
            }
        }
    }
}
