//! Matrix multiply: `C = alpha * A·B + beta * C` on 2-D views of any strides, with a choice of
//! backend.
//!
//! Transposed operands are passed as views (`a.t()`), never copied; accumulation into an existing
//! gradient uses `beta = 1` so nothing is allocated.
//!
//! Large products are split over threads by rows of C (or by columns when C is wide): each
//! thread runs the single-threaded backend kernel on its block, so every element is computed by
//! the same instructions for any thread count, and no kernel-internal thread pool spins. The
//! measured alternatives `gemm-rayon` and `blas-threaded` hand the whole product to the
//! backend's own threads instead (see benches/README.md).

use super::stats::{add_stats, KernelStats};
use super::threads::{for_each_piece, threads};
use crate::tensor::Float;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use std::any::TypeId;
use std::sync::OnceLock;

fn count(m: usize, k: usize, n: usize) {
    add_stats(KernelStats {
        gemm_calls: 1,
        gemm_flops: 2 * (m * k * n) as u64,
    });
}

/// A matrix-multiply implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The triple loop: the reference, slow and obviously right. Never threaded.
    Naive,
    /// The `matrixmultiply` crate: pure Rust, packed AVX2/FMA micro-kernels.
    MatrixMultiply,
    /// The `gemm` crate (pure Rust), with the `gemm` cargo feature: split over tunelab's
    /// threads like matrixmultiply, each piece on one thread (`Parallelism::None`).
    #[cfg(feature = "gemm")]
    Gemm,
    /// The `gemm` crate with its own rayon threads for the whole product (`gemm-rayon` feature),
    /// instead of tunelab's split; measured beside [`Backend::Gemm`].
    #[cfg(feature = "gemm-rayon")]
    GemmRayon,
    /// A system BLAS through CBLAS (OpenBLAS), with the `blas` cargo feature: split over
    /// tunelab's threads, OpenBLAS on one thread per piece.
    #[cfg(feature = "blas")]
    Blas,
    /// OpenBLAS with its own threads for the whole product (as many as tunelab's), instead of
    /// tunelab's split; measured beside [`Backend::Blas`].
    #[cfg(feature = "blas")]
    BlasThreaded,
}

impl Backend {
    /// Every backend compiled into this build.
    pub const ALL: &'static [Backend] = &[
        Backend::Naive,
        Backend::MatrixMultiply,
        #[cfg(feature = "gemm")]
        Backend::Gemm,
        #[cfg(feature = "gemm-rayon")]
        Backend::GemmRayon,
        #[cfg(feature = "blas")]
        Backend::Blas,
        #[cfg(feature = "blas")]
        Backend::BlasThreaded,
    ];

    /// The backend used when `TUNELAB_BACKEND` is not set: BLAS when compiled in, else
    /// matrixmultiply (the `gemm` feature adds a backend to choose, not a new default).
    fn fallback() -> Backend {
        #[cfg(feature = "blas")]
        return Backend::Blas;
        #[cfg(not(feature = "blas"))]
        Backend::MatrixMultiply
    }

    /// The backend [`gemm`] uses: the one named by `TUNELAB_BACKEND` (one of [`Backend::name`]'s
    /// names) when set and compiled in, else BLAS when compiled in, else matrixmultiply.
    pub fn default_backend() -> Backend {
        static CHOSEN: OnceLock<Backend> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let fallback = Backend::fallback();
            match std::env::var("TUNELAB_BACKEND") {
                Ok(name) => Backend::ALL
                    .iter()
                    .copied()
                    .find(|b| b.name() == name.trim())
                    .unwrap_or_else(|| {
                        eprintln!(
                            "warning: TUNELAB_BACKEND={name:?} is not one of this build's \
                             backends; using {}",
                            fallback.name()
                        );
                        fallback
                    }),
                Err(_) => fallback,
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Naive => "naive",
            Backend::MatrixMultiply => "matrixmultiply",
            #[cfg(feature = "gemm")]
            Backend::Gemm => "gemm",
            #[cfg(feature = "gemm-rayon")]
            Backend::GemmRayon => "gemm-rayon",
            #[cfg(feature = "blas")]
            Backend::Blas => "blas",
            #[cfg(feature = "blas")]
            Backend::BlasThreaded => "blas-threaded",
        }
    }

    /// One line on what the backend runs: for OpenBLAS, its build and the kernels it chose.
    pub fn describe(self) -> String {
        match self {
            Backend::Naive => "triple loop, one thread".into(),
            Backend::MatrixMultiply => {
                "matrixmultiply 0.3, one thread per piece of tunelab's split".into()
            }
            #[cfg(feature = "gemm")]
            Backend::Gemm => "gemm 0.19, Parallelism::None per piece of tunelab's split".into(),
            #[cfg(feature = "gemm-rayon")]
            Backend::GemmRayon => "gemm 0.19, Parallelism::Rayon(threads) per product".into(),
            #[cfg(feature = "blas")]
            Backend::Blas => format!(
                "{}, one thread per piece of tunelab's split",
                blas::config()
            ),
            #[cfg(feature = "blas")]
            Backend::BlasThreaded => format!("{}, its own threads per product", blas::config()),
        }
    }

    /// Whether the backend threads a whole product itself rather than being split over
    /// tunelab's threads.
    fn threads_itself(self) -> bool {
        #[cfg(feature = "gemm-rayon")]
        if self == Backend::GemmRayon {
            return true;
        }
        #[cfg(feature = "blas")]
        if self == Backend::BlasThreaded {
            return true;
        }
        false
    }
}

/// Below this many multiply-adds a product stays on one thread (starting one costs ~10-50 µs).
const PARALLEL_MIN_MACS: usize = 1 << 21;

// ANCHOR: gemm
/// `C = alpha * A·B + beta * C`, with A (M, K), B (K, N), C (M, N), on the default backend.
/// Shapes are checked by the callers (the ops), which report errors with tensor names; here a
/// mismatch is a bug.
pub fn gemm<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    gemm_with(Backend::default_backend(), alpha, a, b, beta, c);
}

/// [`gemm`] on a chosen backend (benchmarks and the backend agreement tests).
pub fn gemm_with<F: Float>(
    backend: Backend,
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    assert_eq!(b.dim().0, k, "gemm: inner dimensions");
    assert_eq!(c.dim(), (m, n), "gemm: output shape");
    count(m, k, n);
    if backend == Backend::Naive {
        naive(alpha, a, b, beta, c);
        return;
    }
    let nt = threads();
    if nt <= 1 || m * n * k < PARALLEL_MIN_MACS || m.max(n) < 2 * nt {
        serial(backend, 1, alpha, a, b, beta, c.view_mut());
        return;
    }
    if backend.threads_itself() {
        serial(backend, nt, alpha, a, b, beta, c.view_mut());
        return;
    }
    // Split the larger side of C into one block per thread.
    if m >= n {
        let rows = m.div_ceil(nt);
        let pieces: Vec<_> = a
            .axis_chunks_iter(Axis(0), rows)
            .zip(c.axis_chunks_iter_mut(Axis(0), rows))
            .collect();
        for_each_piece(pieces, |(ai, ci)| {
            serial(backend, 1, alpha, ai, b, beta, ci)
        });
    } else {
        let cols = n.div_ceil(nt);
        let pieces: Vec<_> = b
            .axis_chunks_iter(Axis(1), cols)
            .zip(c.axis_chunks_iter_mut(Axis(1), cols))
            .collect();
        for_each_piece(pieces, |(bj, cj)| {
            serial(backend, 1, alpha, a, bj, beta, cj)
        });
    }
}
// ANCHOR_END: gemm

/// The reference kernel: a plain triple loop, accumulated in `F`. Slow and obviously right.
pub fn gemm_naive<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    gemm_with(Backend::Naive, alpha, a, b, beta, c);
}

// ANCHOR: naive
fn naive<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    for i in 0..m {
        for j in 0..n {
            let mut acc = F::zero();
            for p in 0..k {
                acc += a[[i, p]] * b[[p, j]];
            }
            let prev = if beta == F::zero() {
                F::zero()
            } else {
                beta * c[[i, j]]
            };
            c[[i, j]] = alpha * acc + prev;
        }
    }
}
// ANCHOR_END: naive

/// One block on the calling thread, or on `nt` threads of a backend that threads itself.
fn serial<F: Float>(
    backend: Backend,
    nt: usize,
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    mut c: ArrayViewMut2<F>,
) {
    // Only the backends that thread themselves read `nt`.
    let _ = nt;
    let (m, k) = a.dim();
    let n = b.dim().1;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: C = beta * C (beta = 0 overwrites, even NaN).
        c.mapv_inplace(|x| {
            if beta == F::zero() {
                F::zero()
            } else {
                beta * x
            }
        });
        return;
    }
    match backend {
        Backend::Naive => naive(alpha, a, b, beta, &mut c),
        Backend::MatrixMultiply if m <= SKINNY_ROWS && skinny(alpha, a, b, beta, &mut c) => {}
        Backend::MatrixMultiply => matrixmultiply_gemm(alpha, a, b, beta, c),
        #[cfg(feature = "gemm")]
        Backend::Gemm => gemm_crate::gemm(1, alpha, a, b, beta, c),
        #[cfg(feature = "gemm-rayon")]
        Backend::GemmRayon => gemm_crate::gemm(nt, alpha, a, b, beta, c),
        #[cfg(feature = "blas")]
        Backend::Blas | Backend::BlasThreaded => {
            if !blas::gemm(nt, alpha, a, b, beta, c.view_mut()) {
                matrixmultiply_gemm(alpha, a, b, beta, c);
            }
        }
    }
}

/// Products with at most this many rows of A (one new token per row when generating with a
/// key/value cache) skip matrixmultiply, whose packing of all of B costs more than the product.
const SKINNY_ROWS: usize = 4;

/// C = alpha·A·B + beta·C for a few rows of A, without packing: each row of C is a sum of rows
/// of B (B row-major, a Conv1D weight) or a dot product with each column of B (B column-major,
/// a transposed nn.Linear weight or the tied LM head). Returns false, doing nothing, for other
/// layouts.
fn skinny<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) -> bool {
    let (k, n) = b.dim();
    let scale = |x: F| {
        if beta == F::zero() {
            F::zero()
        } else {
            beta * x
        }
    };
    if b.strides()[1] == 1 || n == 1 {
        for (ar, mut cr) in a.rows().into_iter().zip(c.rows_mut()) {
            let mut acc = vec![F::zero(); n];
            for (p, &ap) in ar.iter().enumerate() {
                let br = b.row(p);
                let br = br.as_slice().expect("contiguous rows");
                for (o, &x) in acc.iter_mut().zip(br) {
                    *o += ap * x;
                }
            }
            for (cv, &o) in cr.iter_mut().zip(&acc) {
                *cv = alpha * o + scale(*cv);
            }
        }
        return true;
    }
    if b.strides()[0] == 1 || k == 1 {
        for (ar, mut cr) in a.rows().into_iter().zip(c.rows_mut()) {
            let ar = ar.to_vec();
            for (j, cv) in cr.iter_mut().enumerate() {
                let bc = b.column(j);
                let bc = bc.as_slice().expect("contiguous columns");
                // Eight partial sums, so the loop vectorises; the order is fixed.
                let mut lanes = [F::zero(); 8];
                let (head, tail) = (ar.len() / 8 * 8, ar.len() % 8);
                for (x, y) in ar[..head].chunks_exact(8).zip(bc[..head].chunks_exact(8)) {
                    for l in 0..8 {
                        lanes[l] += x[l] * y[l];
                    }
                }
                let mut dot = lanes.iter().fold(F::zero(), |s, &v| s + v);
                for t in 0..tail {
                    dot += ar[head + t] * bc[head + t];
                }
                *cv = alpha * dot + scale(*cv);
            }
        }
        return true;
    }
    false
}

/// Reinterprets a scalar of the generic float type as the concrete type `T` (checked equal).
fn cast<F: Float, T: 'static + Copy>(x: F) -> T {
    assert_eq!(TypeId::of::<F>(), TypeId::of::<T>());
    // SAFETY: F and T are the same type (checked above).
    unsafe { *(&x as *const F as *const T) }
}

fn matrixmultiply_gemm<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    mut c: ArrayViewMut2<F>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let (sa, sb, sc) = (a.strides(), b.strides(), c.strides());
    let (rsa, csa, rsb, csb, rsc, csc) = (sa[0], sa[1], sb[0], sb[1], sc[0], sc[1]);
    // SAFETY: the pointers and element strides describe the views' memory exactly (any
    // strides, negative included, are allowed by matrixmultiply); C is uniquely borrowed.
    unsafe {
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                cast(alpha),
                a.as_ptr() as *const f32,
                rsa,
                csa,
                b.as_ptr() as *const f32,
                rsb,
                csb,
                cast(beta),
                c.as_mut_ptr() as *mut f32,
                rsc,
                csc,
            );
        } else if TypeId::of::<F>() == TypeId::of::<f64>() {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                cast(alpha),
                a.as_ptr() as *const f64,
                rsa,
                csa,
                b.as_ptr() as *const f64,
                rsb,
                csb,
                cast(beta),
                c.as_mut_ptr() as *mut f64,
                rsc,
                csc,
            );
        } else {
            naive(alpha, a, b, beta, &mut c);
        }
    }
}

#[cfg(feature = "gemm")]
mod gemm_crate {
    //! The `gemm` crate: any strides, like matrixmultiply. Its convention is
    //! `dst = alpha dst + beta lhs rhs` (alpha scales the destination), and `read_dst = false`
    //! overwrites it.
    use super::{cast, naive, Float};
    use gemm::Parallelism;
    use ndarray::{ArrayView2, ArrayViewMut2};
    use std::any::TypeId;

    fn parallelism(nt: usize) -> Parallelism {
        #[cfg(feature = "gemm-rayon")]
        if nt > 1 {
            return Parallelism::Rayon(nt);
        }
        let _ = nt;
        Parallelism::None
    }

    /// `C = alpha A B + beta C` on `nt` threads (1: the calling thread only).
    pub(super) fn gemm<F: Float>(
        nt: usize,
        alpha: F,
        a: ArrayView2<F>,
        b: ArrayView2<F>,
        beta: F,
        mut c: ArrayViewMut2<F>,
    ) {
        let (m, k) = a.dim();
        let n = b.dim().1;
        let (sa, sb) = (a.strides(), b.strides());
        let (rsc, csc) = (c.strides()[0], c.strides()[1]);
        let read_dst = beta != F::zero();
        let par = parallelism(nt);
        macro_rules! call {
            ($t:ty) => {
                // SAFETY: the pointers and element strides describe the views' memory exactly
                // (the crate takes any strides, negative included); C is uniquely borrowed.
                unsafe {
                    gemm::gemm::<$t>(
                        m,
                        n,
                        k,
                        c.as_mut_ptr() as *mut $t,
                        csc,
                        rsc,
                        read_dst,
                        a.as_ptr() as *const $t,
                        sa[1],
                        sa[0],
                        b.as_ptr() as *const $t,
                        sb[1],
                        sb[0],
                        cast(beta),
                        cast(alpha),
                        false,
                        false,
                        false,
                        par,
                    )
                }
            };
        }
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            call!(f32);
        } else if TypeId::of::<F>() == TypeId::of::<f64>() {
            call!(f64);
        } else {
            naive(alpha, a, b, beta, &mut c);
        }
    }
}

#[cfg(feature = "blas")]
mod blas {
    //! CBLAS `?gemm`, row-major. A BLAS needs each matrix to have one unit stride; views that do
    //! not (a strided slice) are left to matrixmultiply by returning `false`.
    use super::{cast, Float};
    use cblas_sys::{cblas_dgemm, cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};
    use ndarray::{ArrayView2, ArrayViewMut2};
    use std::any::TypeId;
    use std::os::raw::c_int;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;

    // Links the system OpenBLAS, which provides the CBLAS symbols as well.
    #[link(name = "openblas")]
    extern "C" {
        fn openblas_set_num_threads(n: c_int);
        fn openblas_get_corename() -> *const std::os::raw::c_char;
        fn openblas_get_config() -> *const std::os::raw::c_char;
    }

    /// OpenBLAS's build line and the core whose kernels it runs, e.g. "OpenBLAS 0.3.21
    /// DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64; core Zen".
    pub(super) fn config() -> String {
        // SAFETY: OpenBLAS returns static NUL-terminated strings.
        let (config, core) = unsafe {
            (
                std::ffi::CStr::from_ptr(openblas_get_config()),
                std::ffi::CStr::from_ptr(openblas_get_corename()),
            )
        };
        format!(
            "{}; core {}",
            config.to_string_lossy().trim(),
            core.to_string_lossy()
        )
    }

    /// OpenBLAS picks its kernels from the CPU model when it loads; a release older than the
    /// CPU falls back to the SSE3 "Prescott" kernels, several times slower. It can only be told
    /// otherwise before it loads, through `OPENBLAS_CORETYPE`, so say so.
    fn check_core() {
        // SAFETY: OpenBLAS returns a static NUL-terminated string.
        let core = unsafe { std::ffi::CStr::from_ptr(openblas_get_corename()) };
        let core = core.to_string_lossy();
        #[cfg(target_arch = "x86_64")]
        if core.eq_ignore_ascii_case("prescott") && std::arch::is_x86_feature_detected!("avx2") {
            let hint = if std::arch::is_x86_feature_detected!("avx512f") {
                "SkylakeX"
            } else {
                "Haswell"
            };
            eprintln!(
                "warning: OpenBLAS did not recognise this CPU and uses its slow generic kernels; \
                 run with OPENBLAS_CORETYPE={hint}"
            );
        }
    }

    static CHECKED: Once = Once::new();

    /// The thread count OpenBLAS was last set to (0: not yet). [`super::Backend::Blas`] runs
    /// OpenBLAS on one thread per piece of tunelab's split, so its pool never competes with
    /// tunelab's threads; [`super::Backend::BlasThreaded`] gives it the whole product.
    static OPENBLAS_THREADS: AtomicUsize = AtomicUsize::new(0);

    fn set_threads(nt: usize) {
        if OPENBLAS_THREADS.swap(nt, Ordering::Relaxed) != nt {
            // SAFETY: a plain setter of OpenBLAS's thread count.
            unsafe { openblas_set_num_threads(nt as c_int) };
        }
    }

    /// How a (rows, cols) view is handed to a row-major BLAS: (transpose?, leading dimension).
    fn layout<F>(x: &ArrayView2<F>) -> Option<(bool, c_int)> {
        let (r, c) = x.dim();
        let s = x.strides();
        let ld = |v: isize, min: usize| (v >= min.max(1) as isize).then_some(v as c_int);
        if s[1] == 1 || c == 1 {
            // Row-major: rows are `s[0]` apart (any value works when there is one row).
            let lead = if r == 1 { c.max(1) as isize } else { s[0] };
            if let Some(ld) = ld(lead, c) {
                return Some((false, ld));
            }
        }
        if s[0] == 1 || r == 1 {
            let lead = if c == 1 { r.max(1) as isize } else { s[1] };
            if let Some(ld) = ld(lead, r) {
                return Some((true, ld));
            }
        }
        None
    }

    /// `C = alpha A B + beta C` on `nt` OpenBLAS threads; `false` when the strides do not suit
    /// a BLAS.
    pub(super) fn gemm<F: Float>(
        nt: usize,
        alpha: F,
        a: ArrayView2<F>,
        b: ArrayView2<F>,
        beta: F,
        mut c: ArrayViewMut2<F>,
    ) -> bool {
        CHECKED.call_once(check_core);
        set_threads(nt);
        let c_view = c.view();
        let (m, n) = c.dim();
        let k = a.dim().1;
        // A column-major C is computed as Cᵀ = Bᵀ Aᵀ, which is row-major.
        let (a, b, cm, cn, c_ld) = match layout(&c_view) {
            Some((false, ld)) => (a, b, m, n, ld),
            Some((true, ld)) => (b.reversed_axes(), a.reversed_axes(), n, m, ld),
            None => return false,
        };
        let (Some((ta, lda)), Some((tb, ldb))) = (layout(&a), layout(&b)) else {
            return false;
        };
        let t = |x: bool| {
            if x {
                CBLAS_TRANSPOSE::CblasTrans
            } else {
                CBLAS_TRANSPOSE::CblasNoTrans
            }
        };
        let (cm, cn, k) = (cm as c_int, cn as c_int, k as c_int);
        // SAFETY: pointers, dimensions and leading dimensions describe the views (checked by
        // `layout`); C is uniquely borrowed.
        unsafe {
            if TypeId::of::<F>() == TypeId::of::<f32>() {
                cblas_sgemm(
                    CBLAS_LAYOUT::CblasRowMajor,
                    t(ta),
                    t(tb),
                    cm,
                    cn,
                    k,
                    cast(alpha),
                    a.as_ptr() as *const f32,
                    lda,
                    b.as_ptr() as *const f32,
                    ldb,
                    cast(beta),
                    c.as_mut_ptr() as *mut f32,
                    c_ld,
                );
            } else if TypeId::of::<F>() == TypeId::of::<f64>() {
                cblas_dgemm(
                    CBLAS_LAYOUT::CblasRowMajor,
                    t(ta),
                    t(tb),
                    cm,
                    cn,
                    k,
                    cast(alpha),
                    a.as_ptr() as *const f64,
                    lda,
                    b.as_ptr() as *const f64,
                    ldb,
                    cast(beta),
                    c.as_mut_ptr() as *mut f64,
                    c_ld,
                );
            } else {
                return false;
            }
        }
        true
    }
}
