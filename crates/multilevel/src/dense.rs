//! Small dense linear algebra on row-major `Vec<f64>` square matrices: Cholesky, triangular solves and
//! inverses, used for the per-level blocks of the penalized least-squares system and for p×p matrices, and
//! the congruences `Λ_r'BΛ_c` and `ΛZΛ'` by lower-triangular relative covariance factors.

// Index loops mirror the matrix formulas (row-major `a[i * n + j]`).
#![allow(clippy::needless_range_loop)]

/// In-place lower Cholesky of the n×n row-major `a` (upper triangle left untouched, then zeroed).
/// Returns `false` when a pivot is not positive and finite.
pub(crate) fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for k in j + 1..n {
            a[j * n + k] = 0.0;
        }
    }
    true
}

/// Solves `L x = b` in place for lower-triangular `l` (n×n); `b` is n×m row-major.
pub(crate) fn forward_solve(l: &[f64], n: usize, b: &mut [f64], m: usize) {
    for i in 0..n {
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                for c in 0..m {
                    b[i * m + c] -= lik * b[k * m + c];
                }
            }
        }
        let d = l[i * n + i];
        for c in 0..m {
            b[i * m + c] /= d;
        }
    }
}

/// Solves `L' x = b` in place for lower-triangular `l` (n×n); `b` is n×m row-major.
pub(crate) fn backward_solve(l: &[f64], n: usize, b: &mut [f64], m: usize) {
    for i in (0..n).rev() {
        for k in i + 1..n {
            let lki = l[k * n + i];
            if lki != 0.0 {
                for c in 0..m {
                    b[i * m + c] -= lki * b[k * m + c];
                }
            }
        }
        let d = l[i * n + i];
        for c in 0..m {
            b[i * m + c] /= d;
        }
    }
}

/// Solves `L L' x = b` in place for one right-hand side, given the lower Cholesky factor `l`.
pub(crate) fn chol_solve(l: &[f64], n: usize, b: &mut [f64]) {
    forward_solve(l, n, b, 1);
    backward_solve(l, n, b, 1);
}

/// `(L L')^{-1}` from the lower Cholesky factor `l`.
pub(crate) fn chol_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0.0; n * n];
    for i in 0..n {
        x[i * n + i] = 1.0;
    }
    forward_solve(l, n, &mut x, n);
    backward_solve(l, n, &mut x, n);
    x
}

/// Inverse of a general n×n matrix by Gauss–Jordan elimination with partial pivoting; `None` if singular.
pub(crate) fn inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))?;
        if m[piv * n + c] == 0.0 || !m[piv * n + c].is_finite() {
            return None;
        }
        if piv != c {
            for k in 0..n {
                m.swap(piv * n + k, c * n + k);
                inv.swap(piv * n + k, c * n + k);
            }
        }
        let d = m[c * n + c];
        for k in 0..n {
            m[c * n + k] /= d;
            inv[c * n + k] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[r * n + c];
                if f != 0.0 {
                    for k in 0..n {
                        m[r * n + k] -= f * m[c * n + k];
                        inv[r * n + k] -= f * inv[c * n + k];
                    }
                }
            }
        }
    }
    Some(inv)
}

/// `Λ_r' B Λ_c` for a qr × qc block `B` (row-major) and lower-triangular Λs, into `out`.
pub(crate) fn congruence(lam_r: &[f64], blk: &[f64], lam_c: &[f64], qr: usize, qc: usize, out: &mut [f64]) {
    // Column by column, without scratch: first T = BΛ_c's column b in place, then Λ_r'T's, top down (row a
    // reads only rows c ≥ a of T, not yet overwritten).
    for b in 0..qc {
        for a in 0..qr {
            out[a * qc + b] = (b..qc).map(|c| blk[a * qc + c] * lam_c[c * qc + b]).sum();
        }
        for a in 0..qr {
            out[a * qc + b] = (a..qr).map(|c| lam_r[c * qr + a] * out[c * qc + b]).sum();
        }
    }
}

/// `Λ Z Λ'` for a lower-triangular Λ (q × q).
pub(crate) fn lambda_sandwich(lam: &[f64], z: &[f64], q: usize) -> Vec<f64> {
    let mut cov = vec![0.0; q * q];
    for a in 0..q {
        for c in 0..q {
            let mut s = 0.0;
            for i in 0..=a {
                for j in 0..=c {
                    s += lam[a * q + i] * z[i * q + j] * lam[c * q + j];
                }
            }
            cov[a * q + c] = s;
        }
    }
    cov
}
