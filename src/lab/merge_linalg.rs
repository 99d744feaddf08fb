//! A small singular value decomposition for merging: one-sided Jacobi (Hestenes 1958) in f64.
//!
//! PEFT's `*_svd` combinations merge full updates ΔW (d_out, d_in) and re-factor the result into
//! a rank-r LoRA pair with `torch.linalg.svd`: B = U_r · diag(S_r), A = Vhᵣ. Here the same
//! factorisation is computed by rotating pairs of columns of W (m ≥ n) until they are mutually
//! orthogonal; then W = W' Vᵀ with W' = U · diag(S): the column norms of W' are the singular
//! values, its normalised columns are U, and V is the product of the rotations. Each rotation
//! zeroes the inner product of its two columns exactly, and sweeps repeat until every pair is
//! orthogonal to machine precision; the method is slow (O(m n²) per sweep) but simple and
//! accurate to the last bits, which is what matters for the small matrices of tunelab's models.
//!
//! A wide matrix (m < n) is decomposed through its transpose. Singular values come out in
//! descending order; the signs of matching columns of U and rows of Vᵀ are arbitrary (as in
//! LAPACK), so tests compare products, not factors.

use ndarray::{Array2, ArrayView2, Axis};

/// W = U · diag(s) · vt, with k = min(m, n): u (m, k), s (k) descending, vt (k, n).
#[derive(Debug, Clone)]
pub struct Svd {
    pub u: Array2<f64>,
    pub s: Vec<f64>,
    pub vt: Array2<f64>,
}

/// The most sweeps before giving up; convergence takes 6–12 on the matrices merged here.
const MAX_SWEEPS: usize = 60;

/// The thin SVD of `w` (m, n).
pub fn svd(w: ArrayView2<'_, f64>) -> Svd {
    let (m, n) = w.dim();
    if m < n {
        let t = svd(w.t());
        return Svd {
            u: t.vt.t().to_owned(),
            s: t.s,
            vt: t.u.t().to_owned(),
        };
    }
    let mut a = w.to_owned(); // (m, n): its columns are rotated until orthogonal
    let mut v = Array2::<f64>::eye(n);
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for p in 0..n.saturating_sub(1) {
            for q in p + 1..n {
                let (cp, cq) = (a.column(p), a.column(q));
                let alpha = cp.dot(&cp);
                let beta = cq.dot(&cq);
                let gamma = cp.dot(&cq);
                if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                // The rotation that makes columns p and q orthogonal (the smaller angle).
                let zeta = (beta - alpha) / (2.0 * gamma);
                let sign = if zeta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                rotate(&mut a, p, q, c, s);
                rotate(&mut v, p, q, c, s);
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..n)
        .map(|j| a.column(j).dot(&a.column(j)).sqrt())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
    let mut u = Array2::<f64>::zeros((m, n));
    let mut vt = Array2::<f64>::zeros((n, n));
    let mut s = Vec::with_capacity(n);
    for (k, &j) in order.iter().enumerate() {
        let sigma = norms[j];
        s.push(sigma);
        if sigma > 0.0 {
            u.column_mut(k).assign(&(&a.column(j) / sigma));
        }
        vt.row_mut(k).assign(&v.column(j));
    }
    Svd { u, s, vt }
}

/// Columns p, q of `x` ← (c·x_p − s·x_q, s·x_p + c·x_q).
fn rotate(x: &mut Array2<f64>, p: usize, q: usize, c: f64, s: f64) {
    for mut row in x.axis_iter_mut(Axis(0)) {
        let (xp, xq) = (row[p], row[q]);
        row[p] = c * xp - s * xq;
        row[q] = s * xp + c * xq;
    }
}

/// PEFT's re-factorisation of a merged update ΔW (d_out, d_in) into a rank-`rank` LoRA pair:
/// B = U_r · diag(S_r) (d_out, rank) and A = Vhᵣ (rank, d_in), so B A is ΔW's best rank-r
/// approximation. With `clamp` (PEFT's `svd_clamp`, a quantile in [0, 1]), the entries of both
/// are clamped to ±the `clamp` quantile of all their entries (torch.quantile's linear
/// interpolation). `rank` must be at most min(d_out, d_in).
pub fn low_rank(
    delta: ArrayView2<'_, f64>,
    rank: usize,
    clamp: Option<f64>,
) -> (Array2<f64>, Array2<f64>) {
    let d = svd(delta);
    let r = rank.min(d.s.len());
    let mut b = d.u.slice(ndarray::s![.., ..r]).to_owned();
    for (k, mut col) in b.axis_iter_mut(Axis(1)).enumerate() {
        col *= d.s[k];
    }
    let mut a = d.vt.slice(ndarray::s![..r, ..]).to_owned();
    if let Some(q) = clamp {
        let mut all: Vec<f64> = b.iter().chain(a.iter()).copied().collect();
        all.sort_by(f64::total_cmp);
        let hi = quantile_sorted(&all, q);
        b.mapv_inplace(|x| x.clamp(-hi, hi));
        a.mapv_inplace(|x| x.clamp(-hi, hi));
    }
    (a, b)
}

/// The q-quantile of sorted values, interpolated linearly between neighbours (torch's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(m: usize, n: usize, seed: u64) -> Array2<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((m, n), |_| rng.random::<f64>() * 2.0 - 1.0)
    }

    fn max_abs(a: &Array2<f64>) -> f64 {
        a.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    #[test]
    fn svd_reconstructs_tall_and_wide_matrices_with_orthonormal_factors() {
        for (m, n) in [(7, 4), (4, 7), (5, 5), (1, 3), (12, 1)] {
            let w = random(m, n, (m * 31 + n) as u64);
            let d = svd(w.view());
            let k = m.min(n);
            assert_eq!(d.u.dim(), (m, k));
            assert_eq!(d.vt.dim(), (k, n));
            let us = &d.u * &ndarray::Array1::from(d.s.clone());
            let err = max_abs(&(us.dot(&d.vt) - &w));
            assert!(err < 1e-12, "({m}, {n}): reconstruction error {err}");
            let utu = d.u.t().dot(&d.u) - Array2::<f64>::eye(k);
            let vvt = d.vt.dot(&d.vt.t()) - Array2::<f64>::eye(k);
            assert!(max_abs(&utu) < 1e-12 && max_abs(&vvt) < 1e-12);
            assert!(d.s.windows(2).all(|p| p[0] >= p[1]), "{:?}", d.s);
        }
    }

    #[test]
    fn svd_of_a_rank_two_matrix_has_two_nonzero_singular_values() {
        let a = random(6, 2, 1);
        let b = random(2, 5, 2);
        let d = svd(a.dot(&b).view());
        assert!(d.s[1] > 1e-3);
        assert!(d.s[2..].iter().all(|&s| s < 1e-12), "{:?}", d.s);
        // Its rank-2 factorisation reproduces it exactly.
        let (lo_a, lo_b) = low_rank(a.dot(&b).view(), 2, None);
        assert!(max_abs(&(lo_b.dot(&lo_a) - a.dot(&b))) < 1e-12);
    }

    #[test]
    fn quantile_interpolates_like_torch() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        // torch.quantile(tensor([1., 2., 4., 8.]), 0.5) = 3.0
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
    }
}
