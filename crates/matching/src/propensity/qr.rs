//! The least-squares step of IRLS as R's `dqrls` computes it, made scalable: fixed row blocks of
//! `[X·w | z·w]` are reduced by unpivoted Householder QR in parallel, the stacked triangles by LINPACK's
//! `dqrdc2` (limited column pivoting), then `dqrsl` and back-substitution. Also names aliased columns.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::{BLOCK, Link, PropensityError};

/// One weighted least-squares step: `dqrls` on `[X·w | z·w]` for the rows with positive weight.
#[derive(Debug)]
pub(super) struct Step {
    /// Coefficients in the original column order (aliased columns 0, as `dqrls`).
    pub(super) coef: Vec<f64>,
    /// Numerical rank.
    pub(super) rank: usize,
    /// `pivot[j]`: original column at pivoted position j.
    pivot: Vec<usize>,
    /// Reduced matrix after `dqrdc2` (column-major, `rows` × p): R in its upper triangle.
    qr: Vec<f64>,
    rows: usize,
    /// Column norms of the weighted design.
    norms: Vec<f64>,
}

impl Step {
    fn r(&self, i: usize, j: usize) -> f64 {
        self.qr[j * self.rows + i]
    }

    /// `sqrt(diag(chol2inv(R)))` mapped back to the original order (full rank).
    pub(super) fn std_errors(&self) -> Vec<f64> {
        let k = self.rank;
        // Rinv: upper triangular inverse of R[0..k, 0..k], column-major.
        let mut rinv = vec![0.0; k * k];
        for j in 0..k {
            rinv[j * k + j] = 1.0 / self.r(j, j);
            for i in (0..j).rev() {
                let mut s = 0.0;
                for m in i + 1..=j {
                    s += self.r(i, m) * rinv[j * k + m];
                }
                rinv[j * k + i] = -s / self.r(i, i);
            }
        }
        let mut se = vec![f64::NAN; self.pivot.len()];
        for i in 0..k {
            let mut s = 0.0;
            for j in i..k {
                s += rinv[j * k + i] * rinv[j * k + i];
            }
            se[self.pivot[i]] = s.sqrt();
        }
        se
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn wls_step(
    x: ArrayView2<f64>,
    y: &[f64],
    w: &[f64],
    eta: &[f64],
    mu: &[f64],
    link: Link,
    tol: f64,
    iteration: usize,
) -> Result<Step, PropensityError> {
    let (n, p) = x.dim();
    let q = p + 1;
    let n_blocks = n.div_ceil(BLOCK);
    // Level 1: each block of rows → its triangular factor (row-major blocks of ≤ q rows × q).
    let blocks: Vec<Result<(Vec<f64>, usize), PropensityError>> = (0..n_blocks)
        .into_par_iter()
        .map(|b| {
            let lo = b * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let good: Vec<usize> = (lo..hi).filter(|&i| w[i] > 0.0).filter(|&i| link.mu_eta(eta[i]) != 0.0).collect();
            let m = good.len();
            let mut a = vec![0.0; m * q]; // column-major m × q
            for (r, &i) in good.iter().enumerate() {
                let me = link.mu_eta(eta[i]);
                let var = mu[i] * (1.0 - mu[i]);
                if var == 0.0 || var.is_nan() {
                    return Err(PropensityError::NumericalFailure { iteration, reason: "0s in V(mu)" });
                }
                let z = eta[i] + (y[i] - mu[i]) / me;
                let ww = (w[i] * me * me / var).sqrt();
                let row = x.row(i);
                for j in 0..p {
                    a[j * m + r] = row[j] * ww;
                }
                a[p * m + r] = z * ww;
            }
            householder(&mut a, m, q);
            let rows = m.min(q);
            let mut out = vec![0.0; rows * q];
            for i in 0..rows {
                for j in i..q {
                    out[i * q + j] = a[j * m + i];
                }
            }
            Ok((out, rows))
        })
        .collect();
    let mut stacked_rows = 0;
    let mut parts = Vec::with_capacity(blocks.len());
    for b in blocks {
        let (v, r) = b?;
        stacked_rows += r;
        parts.push((v, r));
    }
    // Level 2: dqrdc2 + dqrsl on the stacked triangles.
    let s = stacked_rows;
    let mut a = vec![0.0; s * p];
    let mut z = vec![0.0; s];
    let mut r0 = 0;
    for (v, r) in &parts {
        for i in 0..*r {
            for j in 0..p {
                a[j * s + r0 + i] = v[i * q + j];
            }
            z[r0 + i] = v[i * q + p];
        }
        r0 += r;
    }
    let norms: Vec<f64> = (0..p).map(|j| norm2(&a[j * s..(j + 1) * s])).collect();
    let (rank, pivot, qraux) = dqrdc2(&mut a, s, p, tol);
    // dqrsl: qty = Q'z, then back-substitute R b = qty[0..rank].
    for j in 0..rank.min(s.saturating_sub(1)) {
        if qraux[j] != 0.0 {
            let col = &mut a[j * s..(j + 1) * s];
            let diag = col[j];
            col[j] = qraux[j];
            let t = -dot(&col[j..], &z[j..]) / col[j];
            for (zi, ci) in z[j..].iter_mut().zip(&col[j..]) {
                *zi += t * ci;
            }
            col[j] = diag;
        }
    }
    let mut bp = vec![0.0; p];
    for j in (0..rank).rev() {
        let mut v = z[j];
        for m in j + 1..rank {
            v -= a[m * s + j] * bp[m];
        }
        bp[j] = v / a[j * s + j];
    }
    let mut coef = vec![0.0; p];
    for j in 0..p {
        coef[pivot[j]] = bp[j];
    }
    Ok(Step { coef, rank, pivot, qr: a, rows: s, norms })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm2(a: &[f64]) -> f64 {
    let scale = a.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if scale == 0.0 {
        return 0.0;
    }
    let s: f64 = a.iter().map(|v| (v / scale) * (v / scale)).sum();
    scale * s.sqrt()
}

/// Unpivoted Householder QR in place (LINPACK conventions), column-major m × q. R is left in the upper
/// triangle; the reflectors below it are not needed.
fn householder(a: &mut [f64], m: usize, q: usize) {
    for l in 0..q.min(m.saturating_sub(1)) {
        let (left, right) = a.split_at_mut((l + 1) * m);
        let col = &mut left[l * m..];
        let mut nrm = norm2(&col[l..]);
        if nrm == 0.0 {
            continue;
        }
        if col[l] != 0.0 {
            nrm = nrm.copysign(col[l]);
        }
        for v in &mut col[l..] {
            *v /= nrm;
        }
        col[l] += 1.0;
        for j in 0..q - l - 1 {
            let cj = &mut right[j * m..(j + 1) * m];
            let t = -dot(&col[l..], &cj[l..]) / col[l];
            for (c, h) in cj[l..].iter_mut().zip(&col[l..]) {
                *c += t * h;
            }
        }
        col[l] = -nrm;
    }
}

/// LINPACK `dqrdc2` (R's modification with limited pivoting): column-major n × p in place. Returns the
/// rank, the pivot (original column at each position) and `qraux`.
fn dqrdc2(x: &mut [f64], n: usize, p: usize, tol: f64) -> (usize, Vec<usize>, Vec<f64>) {
    let mut jpvt: Vec<usize> = (0..p).collect();
    let mut qraux: Vec<f64> = (0..p).map(|j| norm2(&x[j * n..(j + 1) * n])).collect();
    let mut work1 = qraux.clone();
    let mut work2: Vec<f64> = qraux.iter().map(|&v| if v == 0.0 { 1.0 } else { v }).collect();
    let lup = n.min(p);
    let mut k = p + 1; // 1-based as in the Fortran
    for l in 0..lup {
        // Move columns with negligible remaining norm to the end.
        while l + 1 < k && qraux[l] < work2[l] * tol {
            let col: Vec<f64> = x[l * n..(l + 1) * n].to_vec();
            x.copy_within((l + 1) * n..p * n, l * n);
            x[(p - 1) * n..p * n].copy_from_slice(&col);
            jpvt[l..].rotate_left(1);
            qraux[l..].rotate_left(1);
            work1[l..].rotate_left(1);
            work2[l..].rotate_left(1);
            k -= 1;
        }
        if l + 1 == n {
            break;
        }
        let (left, right) = x.split_at_mut((l + 1) * n);
        let col = &mut left[l * n..];
        let mut nrmxl = norm2(&col[l..]);
        if nrmxl == 0.0 {
            continue;
        }
        if col[l] != 0.0 {
            nrmxl = nrmxl.copysign(col[l]);
        }
        for v in &mut col[l..] {
            *v /= nrmxl;
        }
        col[l] += 1.0;
        for j in l + 1..p {
            let cj = &mut right[(j - l - 1) * n..(j - l) * n];
            let t = -dot(&col[l..], &cj[l..]) / col[l];
            for (c, h) in cj[l..].iter_mut().zip(&col[l..]) {
                *c += t * h;
            }
            if qraux[j] != 0.0 {
                let tt = (1.0 - (cj[l].abs() / qraux[j]).powi(2)).max(0.0);
                if tt.abs() >= 1e-6 {
                    qraux[j] *= tt.sqrt();
                } else {
                    qraux[j] = norm2(&cj[l + 1..]);
                    work1[j] = qraux[j];
                }
            }
        }
        qraux[l] = col[l];
        col[l] = -nrmxl;
    }
    let rank = (k - 1).min(n);
    (rank, jpvt, qraux)
}

/// Names the first aliased column (constant or collinear) and what it is a combination of.
pub(super) fn aliased_error(x: ArrayView2<f64>, names: &[String], w: &[f64], step: &Step) -> PropensityError {
    let k = step.rank;
    let all_aliased: Vec<String> = step.pivot[k..].iter().map(|&j| names[j].clone()).collect();
    for &j in &step.pivot[k..] {
        let mut vals = x.column(j).into_iter().zip(w).filter(|(_, wi)| **wi > 0.0).map(|(v, _)| *v);
        if let Some(first) = vals.next()
            && vals.all(|v| v == first)
        {
            return PropensityError::ConstantCovariate { term: names[j].clone(), value: first };
        }
    }
    // Solve R11 c = R12[:, first aliased] for the combination of kept columns.
    let ja = k; // pivoted position of the first aliased column
    let mut c = vec![0.0; k];
    for i in (0..k).rev() {
        let mut v = step.r(i, ja);
        for (m, cm) in c.iter().enumerate().skip(i + 1) {
            v -= step.r(i, m) * cm;
        }
        c[i] = v / step.r(i, i);
    }
    let target = step.norms[step.pivot[ja]];
    let with = (0..k)
        .filter(|&i| (c[i] * step.norms[step.pivot[i]]).abs() > 1e-6 * target)
        .map(|i| names[step.pivot[i]].clone())
        .collect();
    PropensityError::Collinear { term: names[step.pivot[ja]].clone(), with, all_aliased }
}
