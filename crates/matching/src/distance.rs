//! Mahalanobis distances for `mahvars`, computed as MatchIt's `transform_covariates(method = "mahalanobis")`.
//!
//! The covariates are standardized over all units (`scale`), their pooled within-group covariance `S` is
//! computed over the non-discarded units (group-mean centred, divided by `n - g`), and each row `x` is mapped
//! to `y = R x` where `R'R = S⁻¹` is the pivoted Cholesky factor of the inverse (R's `chol(pivot = TRUE)`,
//! un-permuted). Squared Euclidean distances between transformed rows are then squared Mahalanobis
//! distances, and the first transformed column is the variable MatchIt sorts on to search for matches.
//! [`Mahalanobis::squared`] evaluates the same distance from raw differences, so that mirror-image pairs
//! (equal distances in exact arithmetic) compare equal and MatchIt's tie rule decides between them.
//! Columns with no variance (range below √ε) are dropped, as in MatchIt.

use ndarray::{Array2, ArrayView2};
use thiserror::Error;

/// Errors of [`mahalanobis_transform`].
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DistanceError {
    /// The covariate matrix has the wrong number of rows.
    #[error("covariate matrix has {rows} rows for {n} units")]
    Rows {
        /// Rows of the matrix.
        rows: usize,
        /// Number of units.
        n: usize,
    },
    /// A covariate value is not finite.
    #[error("covariate column {column}, row {row} is not finite")]
    NonFinite {
        /// Row index.
        row: usize,
        /// Column index.
        column: usize,
    },
    /// The pooled covariance matrix is singular (collinear covariates).
    #[error("the pooled covariance of the Mahalanobis covariates is singular")]
    Singular,
    /// No covariate columns.
    #[error("no Mahalanobis covariates given")]
    NoColumns,
}

/// The Mahalanobis metric of a set of covariates, as MatchIt defines it (see the module documentation).
#[derive(Debug, Clone)]
pub struct Mahalanobis {
    /// Standardized retained columns, one row per unit.
    z: Array2<f64>,
    /// Raw retained columns (differences are taken on these, then scaled, so that mirror-image
    /// differences give bit-identical distances: ties in exact arithmetic stay ties).
    raw: Array2<f64>,
    /// Column SDs over all units.
    sd: Vec<f64>,
    /// Inverse pooled covariance of the standardized columns.
    inv: Vec<Vec<f64>>,
    /// Transformed coordinates `y = R z` (first column: MatchIt's search variable).
    y: Array2<f64>,
}

impl Mahalanobis {
    /// Builds the metric; `discarded` units are excluded from the covariance but still measured.
    pub fn new(x: ArrayView2<'_, f64>, treat: &[bool], discarded: &[bool]) -> Result<Self, DistanceError> {
        let n = treat.len();
        if x.nrows() != n {
            return Err(DistanceError::Rows { rows: x.nrows(), n });
        }
        if x.ncols() == 0 {
            return Err(DistanceError::NoColumns);
        }
        if let Some(((row, column), _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(DistanceError::NonFinite { row, column });
        }
        let keep: Vec<usize> = (0..x.ncols())
            .filter(|&j| {
                let c = x.column(j);
                let (lo, hi) = c.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                (hi - lo).abs() >= f64::EPSILON.sqrt()
            })
            .collect();
        if keep.is_empty() {
            // MatchIt falls back to the Euclidean distance on the first column.
            let raw = x.column(0).to_owned().insert_axis(ndarray::Axis(1));
            return Ok(Self { z: raw.clone(), y: raw.clone(), raw, sd: vec![1.0], inv: vec![vec![1.0]] });
        }
        let p = keep.len();
        let raw = Array2::from_shape_fn((n, p), |(i, k)| x[[i, keep[k]]]);
        // scale(): centre and divide by the sample SD over all units.
        let mut z = Array2::<f64>::zeros((n, p));
        let mut sd = Vec::with_capacity(p);
        for k in 0..p {
            let c = raw.column(k);
            let mean = c.sum() / n as f64;
            let s = (c.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n as f64 - 1.0)).sqrt();
            for i in 0..n {
                z[[i, k]] = (c[i] - mean) / s;
            }
            sd.push(s);
        }
        // Pooled within-group covariance over the retained units.
        let mut centred = Vec::new();
        let mut groups = 0usize;
        for group in [false, true] {
            let rows: Vec<usize> = (0..n).filter(|&i| treat[i] == group && !discarded[i]).collect();
            if rows.is_empty() {
                continue;
            }
            groups += 1;
            let means: Vec<f64> =
                (0..p).map(|k| rows.iter().map(|&i| z[[i, k]]).sum::<f64>() / rows.len() as f64).collect();
            for &i in &rows {
                centred.push((0..p).map(|k| z[[i, k]] - means[k]).collect::<Vec<_>>());
            }
        }
        let m = centred.len();
        let mut s = vec![vec![0.0; p]; p];
        for a in 0..p {
            for b in 0..=a {
                let v = centred.iter().map(|r| r[a] * r[b]).sum::<f64>() / (m as f64 - groups as f64);
                s[a][b] = v;
                s[b][a] = v;
            }
        }
        let inv = invert(&s).ok_or(DistanceError::Singular)?;
        let (r, piv) = pivoted_cholesky(&inv).ok_or(DistanceError::Singular)?;
        // y_i[row] = Σ_k z_i[piv[k]] · R[row][k]
        let mut y = Array2::<f64>::zeros((n, p));
        for i in 0..n {
            for row in 0..p {
                let mut acc = 0.0;
                for (k, &pk) in piv.iter().enumerate() {
                    acc += z[[i, pk]] * r[row][k];
                }
                y[[i, row]] = acc;
            }
        }
        Ok(Self { z, raw, sd, inv, y })
    }

    /// Squared Mahalanobis distance between units `i` and `j`.
    pub fn squared(&self, i: usize, j: usize) -> f64 {
        let p = self.sd.len();
        let mut buf = [0.0f64; 16];
        let mut big = Vec::new();
        let delta: &mut [f64] = if p <= buf.len() {
            &mut buf[..p]
        } else {
            big.resize(p, 0.0);
            &mut big
        };
        for (k, dk) in delta.iter_mut().enumerate() {
            *dk = (self.raw[[i, k]] - self.raw[[j, k]]) / self.sd[k];
        }
        let mut q = 0.0;
        for (a, row) in self.inv.iter().enumerate() {
            let r: f64 = row.iter().zip(delta.iter()).map(|(x, y)| x * y).sum();
            q += delta[a] * r;
        }
        q
    }

    /// The transformed coordinates (squared Euclidean distances between rows are squared Mahalanobis
    /// distances up to rounding); column 0 is the variable MatchIt's search walks along.
    pub fn transformed(&self) -> &Array2<f64> {
        &self.y
    }

    /// The standardized retained covariates.
    pub fn standardized(&self) -> &Array2<f64> {
        &self.z
    }
}

/// Transformed covariates whose squared Euclidean distances are squared Mahalanobis distances (see the
/// module documentation). `discarded` units are excluded from the covariance but still transformed.
pub fn mahalanobis_transform(
    x: ArrayView2<'_, f64>,
    treat: &[bool],
    discarded: &[bool],
) -> Result<Array2<f64>, DistanceError> {
    Ok(Mahalanobis::new(x, treat, discarded)?.y)
}

/// Squared Euclidean distance between two rows, summed in column order (as MatchIt's `euc_dist_sq`).
pub fn squared_distance(a: ndarray::ArrayView1<'_, f64>, b: ndarray::ArrayView1<'_, f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Inverse by Gauss–Jordan elimination with partial pivoting; `None` if singular.
fn invert(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let p = a.len();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let mut inv: Vec<Vec<f64>> = (0..p).map(|i| (0..p).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    let scale = a.iter().flatten().fold(0.0f64, |acc, v| acc.max(v.abs()));
    for col in 0..p {
        let piv = (col..p).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[piv][col].abs() <= 1e-12 * scale {
            return None;
        }
        m.swap(col, piv);
        inv.swap(col, piv);
        let d = m[col][col];
        for j in 0..p {
            m[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..p {
            if i != col {
                let f = m[i][col];
                if f != 0.0 {
                    for j in 0..p {
                        m[i][j] -= f * m[col][j];
                        inv[i][j] -= f * inv[col][j];
                    }
                }
            }
        }
    }
    Some(inv)
}

/// Upper pivoted Cholesky factor (LAPACK `dpstf2` order: at each step the largest remaining diagonal):
/// returns `R` (in pivoted coordinates) and the pivot, with `P'AP = R'R`; `None` if not positive definite.
fn pivoted_cholesky(a: &[Vec<f64>]) -> Option<(Vec<Vec<f64>>, Vec<usize>)> {
    let p = a.len();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let mut piv: Vec<usize> = (0..p).collect();
    let mut work = vec![0.0; p];
    for j in 0..p {
        if j > 0 {
            for i in j..p {
                work[i] += m[j - 1][i] * m[j - 1][i];
            }
        }
        let mut best = j;
        for i in j + 1..p {
            if m[i][i] - work[i] > m[best][best] - work[best] {
                best = i;
            }
        }
        let ajj = m[best][best] - work[best];
        if ajj <= 0.0 || !ajj.is_finite() {
            return None;
        }
        if best != j {
            // Symmetric swap of rows/columns j and best in the full matrix, and of the accumulated sums.
            m.swap(j, best);
            for row in m.iter_mut() {
                row.swap(j, best);
            }
            work.swap(j, best);
            piv.swap(j, best);
        }
        let ajj = ajj.sqrt();
        m[j][j] = ajj;
        for i in j + 1..p {
            let v = m.iter().take(j).fold(m[j][i], |acc, row| acc - row[j] * row[i]);
            m[j][i] = v / ajj;
        }
    }
    let r = (0..p).map(|i| (0..p).map(|k| if k >= i { m[i][k] } else { 0.0 }).collect()).collect();
    Some((r, piv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn distances_are_mahalanobis() {
        let x = array![[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0], [0.5, 1.0], [2.5, 4.5]];
        let treat = [true, false, true, false, false, true];
        let y = mahalanobis_transform(x.view(), &treat, &[false; 6]).unwrap();
        let metric = Mahalanobis::new(x.view(), &treat, &[false; 6]).unwrap();
        // Direct formula: standardize, pooled covariance, (a-b)' S^-1 (a-b).
        let n = 6.0;
        let mut z = x.clone();
        for mut c in z.columns_mut() {
            let mean = c.sum() / n;
            let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            c.mapv_inplace(|v| (v - mean) / sd);
        }
        let mut s = [[0.0; 2]; 2];
        for g in [false, true] {
            let rows: Vec<usize> = (0..6).filter(|&i| treat[i] == g).collect();
            let m: Vec<f64> = (0..2).map(|k| rows.iter().map(|&i| z[[i, k]]).sum::<f64>() / 3.0).collect();
            for &i in &rows {
                for a in 0..2 {
                    for b in 0..2 {
                        s[a][b] += (z[[i, a]] - m[a]) * (z[[i, b]] - m[b]) / 4.0;
                    }
                }
            }
        }
        let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
        let inv = [[s[1][1] / det, -s[0][1] / det], [-s[1][0] / det, s[0][0] / det]];
        for i in 0..6 {
            for j in 0..6 {
                let d = [z[[i, 0]] - z[[j, 0]], z[[i, 1]] - z[[j, 1]]];
                let want = d[0] * (inv[0][0] * d[0] + inv[0][1] * d[1]) + d[1] * (inv[1][0] * d[0] + inv[1][1] * d[1]);
                let got = squared_distance(y.row(i), y.row(j));
                assert!((got - want).abs() <= 1e-12 * want.max(1.0), "{i},{j}: {got} vs {want}");
                let direct = metric.squared(i, j);
                assert!((direct - want).abs() <= 1e-12 * want.max(1.0), "{i},{j}: {direct} vs {want}");
            }
        }
    }
}
