//! The three matrix decompositions the LoRA family needs, in plain f64 on small matrices:
//!
//! | function | computes | used by |
//! |---|---|---|
//! | [`svd`] | thin SVD A = U diag(S) Vᵀ, S descending (one-sided Jacobi) | PiSSA's init ([`super::lora`]), [`pinv`] |
//! | [`qr`] | reduced QR A = Q R (Householder, LAPACK's sign convention) | OLoRA's init ([`super::lora`]) |
//! | [`pinv`] | Moore–Penrose pseudo-inverse, as `torch.linalg.pinv` | LoRA-FA's gradient projection ([`super::lora_fa`]) |
//!
//! The matrices are a weight block (at most a few hundred rows and columns) or an r × r Gram
//! matrix, so the reference algorithms are fast enough and need no LAPACK.
//!
//! **One-sided Jacobi (Hestenes).** Rotate pairs of columns of A (m ≥ n; otherwise decompose Aᵀ)
//! until every pair is orthogonal, accumulating the rotations in V: then A V has orthogonal
//! columns whose norms are the singular values, and U is those columns normalised. Each rotation
//! zeroes one column pair's inner product exactly; sweeps repeat until no pair has a relative
//! inner product above 1e-15. A singular vector is defined up to its sign; [`svd`] flips each
//! pair (uᵢ, vᵢ) so that the largest-magnitude entry of uᵢ is positive (PiSSA's B·A does not
//! depend on the signs, nor does training from it).
//!
//! **Householder QR.** Column k is reflected onto β e_k with β = −sign(x_k)·‖x‖, as LAPACK's
//! `dgeqrf` (and so `torch.linalg.qr`) does, so Q and R come out with LAPACK's signs.

use ndarray::{s, Array1, Array2, Axis};

/// Thin SVD of A (m, n): U (m, k), S (k) descending, Vᵀ (k, n) with k = min(m, n).
pub fn svd(a: &Array2<f64>) -> (Array2<f64>, Array1<f64>, Array2<f64>) {
    let (m, n) = a.dim();
    if m < n {
        // A = U S Vᵀ  ⇔  Aᵀ = V S Uᵀ.
        let (u, s, vt) = svd(&a.t().to_owned());
        return (vt.t().to_owned(), s, u.t().to_owned());
    }
    let mut w = a.clone(); // (m, n): becomes A V, orthogonal columns
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (cp, cq) = (w.column(p), w.column(q));
                let alpha = cp.dot(&cp);
                let beta = cq.dot(&cq);
                let gamma = cp.dot(&cq);
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                // The rotation that makes columns p and q orthogonal (Golub & Van Loan 8.6.3).
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let sn = c * t;
                rotate(&mut w, p, q, c, sn);
                rotate(&mut v, p, q, c, sn);
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = w.columns().into_iter().map(|c| c.dot(&c).sqrt()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
    let mut u = Array2::<f64>::zeros((m, n));
    let mut sv = Array1::<f64>::zeros(n);
    let mut vt = Array2::<f64>::zeros((n, n));
    for (k, &j) in order.iter().enumerate() {
        let sigma = norms[j];
        sv[k] = sigma;
        let mut uk = if sigma > 0.0 {
            w.column(j).mapv(|x| x / sigma)
        } else {
            Array1::zeros(m)
        };
        let mut vk = v.column(j).to_owned();
        let big = uk
            .iter()
            .copied()
            .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
        if big < 0.0 {
            uk.mapv_inplace(|x| -x);
            vk.mapv_inplace(|x| -x);
        }
        u.column_mut(k).assign(&uk);
        vt.row_mut(k).assign(&vk);
    }
    (u, sv, vt)
}

/// Columns p, q of `x` ← (c·x_p − s·x_q, s·x_p + c·x_q).
fn rotate(x: &mut Array2<f64>, p: usize, q: usize, c: f64, s: f64) {
    for mut row in x.rows_mut() {
        let (xp, xq) = (row[p], row[q]);
        row[p] = c * xp - s * xq;
        row[q] = s * xp + c * xq;
    }
}

/// Reduced QR of A (m, n): Q (m, k) with orthonormal columns, R (k, n) upper triangular, k =
/// min(m, n), with LAPACK's signs (R's diagonal is −sign(x_k)·‖x‖ of each reflected column).
pub fn qr(a: &Array2<f64>) -> (Array2<f64>, Array2<f64>) {
    let (m, n) = a.dim();
    let k = m.min(n);
    let mut r = a.clone();
    // The reflectors H_j = I − τ_j v_j v_jᵀ, v_j (m − j) with v_j[0] = 1.
    let mut reflectors: Vec<(Array1<f64>, f64)> = Vec::with_capacity(k);
    for j in 0..k {
        let x = r.slice(s![j.., j]).to_owned();
        let alpha = x[0];
        let tail = x.slice(s![1..]).dot(&x.slice(s![1..]));
        let (v, tau) = if tail == 0.0 {
            // Already upper triangular in this column: H = I (LAPACK's τ = 0).
            let mut v = Array1::zeros(m - j);
            v[0] = 1.0;
            (v, 0.0)
        } else {
            let norm = (alpha * alpha + tail).sqrt();
            let beta = if alpha >= 0.0 { -norm } else { norm };
            let tau = (beta - alpha) / beta;
            let mut v = x.mapv(|e| e / (alpha - beta));
            v[0] = 1.0;
            (v, tau)
        };
        if tau != 0.0 {
            // R[j.., j..] ← H R[j.., j..]
            let mut block = r.slice_mut(s![j.., j..]);
            let w = v.dot(&block); // vᵀ R, (n − j)
            for (i, mut row) in block.axis_iter_mut(Axis(0)).enumerate() {
                row.scaled_add(-tau * v[i], &w);
            }
        }
        for i in j + 1..m {
            r[[i, j]] = 0.0;
        }
        reflectors.push((v, tau));
    }
    // Q = H_0 H_1 … H_{k−1} applied to the first k columns of the identity.
    let mut q = Array2::<f64>::zeros((m, k));
    for i in 0..k {
        q[[i, i]] = 1.0;
    }
    for (j, (v, tau)) in reflectors.iter().enumerate().rev() {
        if *tau == 0.0 {
            continue;
        }
        let mut block = q.slice_mut(s![j.., ..]);
        let w = v.dot(&block);
        for (i, mut row) in block.axis_iter_mut(Axis(0)).enumerate() {
            row.scaled_add(-tau * v[i], &w);
        }
    }
    (q, r.slice(s![..k, ..]).to_owned())
}

/// The Moore–Penrose pseudo-inverse of A (m, n), (n, m), as `torch.linalg.pinv` computes it:
/// V diag(1/σ) Uᵀ over the singular values σ > rtol·σ_max, with torch's default rtol =
/// max(m, n)·ε (`eps` the machine epsilon of the caller's precision).
pub fn pinv(a: &Array2<f64>, eps: f64) -> Array2<f64> {
    let (m, n) = a.dim();
    let (u, sv, vt) = svd(a);
    let cutoff = sv.iter().copied().fold(0.0, f64::max) * (m.max(n) as f64) * eps;
    let mut out = Array2::<f64>::zeros((n, m));
    for (k, &sigma) in sv.iter().enumerate() {
        if sigma > cutoff && sigma > 0.0 {
            let vk = vt.row(k);
            let uk = u.column(k);
            for i in 0..n {
                let f = vk[i] / sigma;
                out.row_mut(i).scaled_add(f, &uk);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn max_abs(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        assert_eq!(a.dim(), b.dim());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// A fixed, non-symmetric test matrix (m, n) with entries in (−1, 1).
    fn matrix(m: usize, n: usize) -> Array2<f64> {
        Array2::from_shape_fn((m, n), |(i, j)| {
            ((i * 7 + j * 13 + 3) as f64 * 0.731).sin() + if i == j { 0.5 } else { 0.0 }
        })
    }

    #[test]
    fn svd_of_a_known_matrix_gives_its_singular_values() {
        // [[3, 0], [4, 5]]: AᵀA = [[25, 20], [20, 25]], eigenvalues 45 and 5.
        let a = array![[3.0, 0.0], [4.0, 5.0]];
        let (u, s, vt) = svd(&a);
        assert!((s[0] - 45f64.sqrt()).abs() < 1e-14, "{s}");
        assert!((s[1] - 5f64.sqrt()).abs() < 1e-14, "{s}");
        // v₁ = (1, 1)/√2 up to sign; u₁'s largest entry is positive.
        let h = 0.5f64.sqrt();
        assert!((vt[[0, 0]].abs() - h).abs() < 1e-14 && (vt[[0, 1]].abs() - h).abs() < 1e-14);
        assert!(u.column(0).iter().copied().fold(f64::MIN, f64::max) > 0.0);
        let back = u.dot(&Array2::from_diag(&s)).dot(&vt);
        assert!(max_abs(&back, &a) < 1e-14);
    }

    #[test]
    fn svd_reconstructs_tall_and_wide_matrices_with_orthonormal_factors() {
        for (m, n) in [(9, 4), (4, 9), (6, 6), (1, 5), (5, 1)] {
            let a = matrix(m, n);
            let (u, s, vt) = svd(&a);
            let k = m.min(n);
            assert_eq!((u.dim(), s.len(), vt.dim()), ((m, k), k, (k, n)));
            assert!(s.windows(2).into_iter().all(|w| w[0] >= w[1]), "{s}");
            let back = u.dot(&Array2::from_diag(&s)).dot(&vt);
            assert!(max_abs(&back, &a) < 1e-13, "{m}x{n}");
            assert!(
                max_abs(&u.t().dot(&u), &Array2::eye(k)) < 1e-13,
                "UᵀU {m}x{n}"
            );
            assert!(
                max_abs(&vt.dot(&vt.t()), &Array2::eye(k)) < 1e-13,
                "VᵀV {m}x{n}"
            );
        }
    }

    #[test]
    fn svd_of_a_rank_one_matrix_has_one_nonzero_singular_value() {
        // x yᵀ with ‖x‖ = 3, ‖y‖ = 5: σ = 15, the rest 0.
        let x = array![1.0, 2.0, 2.0];
        let y = array![3.0, 4.0];
        let a = Array2::from_shape_fn((3, 2), |(i, j)| x[i] * y[j]);
        let (_, s, _) = svd(&a);
        assert!((s[0] - 15.0).abs() < 1e-13 && s[1].abs() < 1e-13, "{s}");
    }

    #[test]
    fn qr_matches_lapack_on_a_known_matrix() {
        // numpy.linalg.qr([[12, -51, 4], [6, 167, -68], [-4, 24, -41]]) (LAPACK dgeqrf):
        // R = [[-14, -21, 14], [0, -175, 70], [0, 0, -35]] (the last column is not reflected).
        let a = array![[12.0, -51.0, 4.0], [6.0, 167.0, -68.0], [-4.0, 24.0, -41.0]];
        let (q, r) = qr(&a);
        let want_r = array![[-14.0, -21.0, 14.0], [0.0, -175.0, 70.0], [0.0, 0.0, -35.0]];
        assert!(max_abs(&r, &want_r) < 1e-12, "{r}");
        let want_q = array![
            [-150.0, 69.0, 58.0],
            [-75.0, -158.0, -6.0],
            [50.0, -30.0, 165.0]
        ] / 175.0;
        assert!(max_abs(&q, &want_q) < 1e-12, "{q}");
    }

    #[test]
    fn qr_reconstructs_tall_and_wide_matrices() {
        for (m, n) in [(9, 4), (4, 9), (6, 6)] {
            let a = matrix(m, n);
            let (q, r) = qr(&a);
            let k = m.min(n);
            assert_eq!((q.dim(), r.dim()), ((m, k), (k, n)));
            assert!(max_abs(&q.dot(&r), &a) < 1e-13, "{m}x{n}");
            assert!(max_abs(&q.t().dot(&q), &Array2::eye(k)) < 1e-13);
            for i in 0..k {
                for j in 0..i.min(n) {
                    assert_eq!(r[[i, j]], 0.0, "R[{i},{j}] of {m}x{n}");
                }
            }
        }
    }

    #[test]
    fn pinv_inverts_an_invertible_matrix_and_drops_a_null_direction() {
        let a = array![[4.0, 1.0], [1.0, 3.0]];
        let p = pinv(&a, f64::EPSILON);
        assert!(max_abs(&p.dot(&a), &Array2::eye(2)) < 1e-14);
        // diag(2, 0): the pseudo-inverse is diag(1/2, 0).
        let p = pinv(&array![[2.0, 0.0], [0.0, 0.0]], f64::EPSILON);
        assert!(max_abs(&p, &array![[0.5, 0.0], [0.0, 0.0]]) < 1e-15, "{p}");
        // A A⁺ A = A on a wide matrix.
        let a = matrix(3, 5);
        let p = pinv(&a, f64::EPSILON);
        assert_eq!(p.dim(), (5, 3));
        assert!(max_abs(&a.dot(&p).dot(&a), &a) < 1e-13);
    }
}
