//! Cluster-robust inference for the fixed effects of a linear mixed model: the CR2 (bias-reduced
//! linearization) variance with Bell–McCaffrey / Pustejovsky–Tipton Satterthwaite degrees of freedom for one
//! contrast, and the HTZ Wald test for several, as R's clubSandwich computes them for `lmer` fits
//! (`vcovCR(fit, type = "CR2")`, `coef_test(..., test = "Satterthwaite")`, `Wald_test(..., test = "HTZ")`).
//!
//! With clusters j, the working covariance Θ_j = D_j + Z̃_j Z̃_j' (σ² units; Z̃ = ZΛ(θ̂), D_j = diag(1/w) for
//! prior weights, I without), bread M = (Σ X_j'Θ_j⁻¹X_j)⁻¹ (lme4's vcov/σ²) and marginal residuals
//! e = y − Xβ̂:
//!
//! ```text
//! S_j = Θ_j − X_j M X_j',   A_j: the symmetric solution of A_j S_j A_j = Θ_j,
//! u_j = X_j' Θ_j⁻¹ A_j e_j,  V_CR2 = M (Σ_j u_j u_j') M.
//! ```
//!
//! Nothing is formed at the size of a cluster: rows of a cluster with equal weight are projected onto the
//! span of their columns of [Z̃ X] by a Householder QR, where Θ_j and S_j act as d·I off that span, so A_j is
//! the identity there and every quantity reduces to r × r matrices with r ≤ (random effects of the cluster +
//! p) per weight value. The cost is linear in the number of observations. Clusters must contain whole levels
//! of every grouping factor (clubSandwich's nesting check); the default cluster is the grouping factor with
//! the fewest levels.
//!
//! clubSandwich refuses weighted `lmer` fits; with prior weights this module computes the natural extension
//! above (Θ_j with diag(1/w)), which equals clubSandwich's `lme` method with `varFixed(~1/w)`.

use psmeval_frame::ModelFrame;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, FisherSnedecor, StudentsT};

use crate::dense::{cholesky, inverse};
use crate::error::MixedModelError;
use crate::fit::LmmFit;
use crate::glmm::GlmmFit;
use crate::model::MixedModel;
use crate::result::{ContrastTest, FixedEffect};

/// Eigenvalues at or below this (absolute) are treated as zero in B^{-1/2}, as clubSandwich's `matrix_power`.
const EIGEN_CUT: f64 = 1e-12;
/// Relative tolerance of the rank of a cluster's [Z̃ X] block.
const RANK_TOL: f64 = 1e-10;

/// The CR2 variance of a linear mixed model's fixed effects, with what its small-sample tests need.
#[derive(Debug, Clone, PartialEq)]
pub struct Cr2 {
    /// Number of clusters.
    pub n_clusters: usize,
    /// Fixed-effect names, in the order of `beta`.
    pub terms: Vec<String>,
    /// The fixed effects β̂.
    pub beta: Vec<f64>,
    /// CR2 covariance of β̂ (p × p, row-major).
    pub vcov: Vec<f64>,
    /// Bread M = (X'Θ⁻¹X)⁻¹ in σ² units (p × p).
    m: Vec<f64>,
    /// Per cluster: Ψ_j = E_j Θ_j E_j' and Γ_j = E_j X_j (p × p each).
    psi: Vec<Vec<f64>>,
    gamma: Vec<Vec<f64>>,
    /// Per cluster, for the wild bootstrap: the score u_j = E_j e_j, h_j = X_j'Θ_j⁻¹e_j and
    /// H_j = X_j'Θ_j⁻¹X_j (p × p).
    u: Vec<Vec<f64>>,
    h: Vec<Vec<f64>>,
    hmat: Vec<Vec<f64>>,
}

/// Weights of the wild cluster bootstrap, drawn once per cluster and draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootstrapWeights {
    /// ±1 with probability 1/2.
    Rademacher,
    /// Webb's six-point distribution ±√(1/2), ±1, ±√(3/2), each with probability 1/6 (better with few
    /// clusters, where Rademacher weights have few distinct draws).
    Webb,
}

/// A wild cluster bootstrap-t test of one contrast, with its test-inversion confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WildBootstrap {
    /// Bootstrap draws.
    pub draws: usize,
    /// The weights.
    pub weights: BootstrapWeights,
    /// The CR2 t statistic of `l·β = 0`.
    pub t_statistic: f64,
    /// Symmetric bootstrap p value of `l·β = 0`: the share of draws with |t*| ≥ |t|.
    pub p_value: f64,
    /// Lower limit of the 95% interval: the null values the bootstrap test does not reject at 5%.
    pub ci_low: f64,
    /// Upper limit.
    pub ci_high: f64,
}

/// A joint Wald test of q constraints Cβ = 0 with Hotelling's T² approximation (HTZ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaldTest {
    /// Number of constraints q.
    pub df_num: usize,
    /// Denominator df ν − q + 1.
    pub df_den: f64,
    /// The scaled F statistic δ·Q/q.
    pub f_statistic: f64,
    /// The unscaled Wald statistic Q = (Cβ̂)'(C V C')⁻¹(Cβ̂).
    pub q_statistic: f64,
    /// p value from F(q, ν − q + 1) (NaN when the df are not positive).
    pub p_value: f64,
}

fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * m];
    for i in 0..n {
        for l in 0..k {
            let x = a[i * k + l];
            if x != 0.0 {
                for j in 0..m {
                    c[i * m + j] += x * b[l * m + j];
                }
            }
        }
    }
    c
}

fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut t = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            t[j * n + i] = a[i * m + j];
        }
    }
    t
}

/// Eigen-decomposition of a symmetric n × n matrix by cyclic Jacobi rotations: (values, vectors by column).
fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// S^power of a symmetric PSD matrix through its eigen-decomposition; eigenvalues ≤ [`EIGEN_CUT`] map to 0.
fn symmetric_power(a: &[f64], n: usize, power: f64) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(a, n);
    let mut out = vec![0.0; n * n];
    for (k, &lambda) in values.iter().enumerate() {
        if lambda <= EIGEN_CUT {
            continue;
        }
        let f = lambda.powf(power);
        for i in 0..n {
            let vi = vectors[i * n + k] * f;
            for j in 0..n {
                out[i * n + j] += vi * vectors[j * n + k];
            }
        }
    }
    out
}

/// Householder QR with column pivoting of `k` (rows × cols, row-major, the last column not pivoted):
/// returns Q'k restricted to the rank of the first cols − 1 columns (r × cols, columns in their original
/// order). The last column (a response) is carried along: its first r entries are its projection's
/// coordinates. Reflections are applied row by row (contiguous, so they vectorize), and the pivots' column
/// norms are downdated (LAPACK's `dlaqp2`), recomputed when cancellation leaves too few digits.
fn project(mut k: Vec<f64>, rows: usize, cols: usize) -> (Vec<f64>, usize) {
    let pivoted = cols - 1;
    let mut perm: Vec<usize> = (0..cols).collect();
    let mut norms = vec![0.0; cols];
    for row in k.chunks_exact(cols) {
        norms.iter_mut().zip(row).for_each(|(n, v)| *n += v * v);
    }
    // Each column's norm when last computed exactly (for the downdate's safeguard).
    let mut exact = norms.clone();
    let steps = rows.min(pivoted);
    let mut rank = 0;
    let mut first = 0.0;
    let mut v = Vec::with_capacity(rows);
    let mut w = vec![0.0; cols];
    for s in 0..steps {
        // Pivot: the remaining column with the largest norm.
        let (best, &bn) =
            norms[s..pivoted].iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, v)| (i + s, v)).unwrap();
        if best != s {
            for i in 0..rows {
                k.swap(i * cols + s, i * cols + best);
            }
            norms.swap(s, best);
            exact.swap(s, best);
            perm.swap(s, best);
        }
        let alpha = (s..rows).map(|i| k[i * cols + s].powi(2)).sum::<f64>().sqrt();
        if s == 0 {
            first = alpha;
        }
        if alpha <= RANK_TOL * first || alpha == 0.0 || bn <= 0.0 {
            break;
        }
        let sign = if k[s * cols + s] >= 0.0 { 1.0 } else { -1.0 };
        v.clear();
        v.extend((s..rows).map(|i| k[i * cols + s]));
        v[0] += sign * alpha;
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 > 0.0 {
            // k[s.., s..] -= (2 / v'v) v (v'k[s.., s..]).
            let wr = &mut w[s..];
            wr.iter_mut().for_each(|x| *x = 0.0);
            for (t, &vt) in v.iter().enumerate() {
                let row = &k[(s + t) * cols + s..(s + t + 1) * cols];
                wr.iter_mut().zip(row).for_each(|(a, b)| *a += vt * b);
            }
            let f = 2.0 / vnorm2;
            for (t, &vt) in v.iter().enumerate() {
                let g = f * vt;
                let row = &mut k[(s + t) * cols + s..(s + t + 1) * cols];
                row.iter_mut().zip(wr.iter()).for_each(|(a, b)| *a -= g * b);
            }
        }
        // The remaining columns' norms below row s: downdated by the entry now in row s.
        for c in s + 1..pivoted {
            let downdated = norms[c] - k[s * cols + c].powi(2);
            if downdated > 1e-6 * exact[c] {
                norms[c] = downdated;
            } else {
                norms[c] = (s + 1..rows).map(|i| k[i * cols + c].powi(2)).sum();
                exact[c] = norms[c];
            }
        }
        rank = s + 1;
    }
    // R (rows 0..rank) with its columns back in their original order; below the diagonal it is zero.
    let mut out = vec![0.0; rank * cols];
    for i in 0..rank {
        for (pos, &orig) in perm.iter().enumerate() {
            if pos >= i || pos == cols - 1 {
                out[i * cols + orig] = k[i * cols + pos];
            }
        }
    }
    (out, rank)
}

/// A cluster reduced to the span of its [Z̃ X] columns: X̂ (r × p), T = diag(d) + ẐẐ' (r × r), ê (r).
struct Reduced {
    r: usize,
    x: Vec<f64>,
    t: Vec<f64>,
    e: Vec<f64>,
}

impl Cr2 {
    /// The CR2 variance of `fit`'s fixed effects, fitted to `frame` with prior `weights` (the fit's, if any),
    /// clustered by `cluster` (a code per frame row). Clusters must hold whole levels of every grouping
    /// factor, and there must be at least two.
    pub fn new(
        frame: &ModelFrame,
        fit: &LmmFit,
        weights: Option<&[f64]>,
        cluster: &[u32],
    ) -> Result<Cr2, MixedModelError> {
        let terms: Vec<String> = fit.fixed_effects().iter().map(|f| f.term.clone()).collect();
        Cr2::at(frame, &terms, fit.beta(), fit.theta(), weights, cluster)
    }

    /// CR2 for a logistic mixed model, from its working linear model at the estimates (the IRLS
    /// linearization the Laplace fit converged to): working response z = η + (y − μ)/(μ(1 − μ)), working
    /// weights w = prior weight × μ(1 − μ), η the conditional linear predictor Xβ̂ + Zb̂, residual variance 1
    /// and the fit's θ. Rows are scaled by √w, so every row has unit residual variance and each cluster
    /// reduces to one block; the variance is that of β̂ as a linear estimator of the working response, so it
    /// allows for school-level variation (cohort shocks, trends) the model does not represent, as CR2 does
    /// for a linear model. Its Bell–McCaffrey df use the same working model.
    pub fn logistic(
        frame: &ModelFrame,
        fit: &GlmmFit,
        prior_weights: Option<&[f64]>,
        cluster: &[u32],
    ) -> Result<Cr2, MixedModelError> {
        let n = frame.y.len();
        if let Some(w) = prior_weights
            && w.len() != n
        {
            return Err(MixedModelError::DimensionMismatch { what: "weights".into(), expected: n, found: w.len() });
        }
        let eta = fit.linear_predictor(frame)?;
        let mut working = frame.clone();
        for (i, &e) in eta.iter().enumerate() {
            let mu = 1.0 / (1.0 + (-e).exp());
            // Fitted probabilities of exactly 0 or 1 would give an infinite working response.
            let v = (mu * (1.0 - mu)).max(1e-12);
            let scale = (prior_weights.map_or(1.0, |w| w[i]) * v).sqrt();
            working.y[i] = scale * (e + (frame.y[i] - mu) / v);
            working.x.row_mut(i).mapv_inplace(|a| a * scale);
            for term in &mut working.random {
                term.z.row_mut(i).mapv_inplace(|a| a * scale);
            }
        }
        let terms: Vec<String> = fit.fixed_effects().iter().map(|f| f.term.clone()).collect();
        Cr2::at(&working, &terms, fit.beta(), fit.theta(), None, cluster)
    }

    /// The CR2 variance at given estimates: fixed effects `beta` of the frame's columns named `terms`, and
    /// relative covariance parameters `theta` in lme4's order. [`Cr2::new`] takes them from a fit; this form
    /// lets a test plug in lme4's own estimates.
    pub fn at(
        frame: &ModelFrame,
        terms: &[String],
        beta: &[f64],
        theta: &[f64],
        weights: Option<&[f64]>,
        cluster: &[u32],
    ) -> Result<Cr2, MixedModelError> {
        let n = frame.y.len();
        if cluster.len() != n {
            return Err(MixedModelError::DimensionMismatch {
                what: "cluster".into(),
                expected: n,
                found: cluster.len(),
            });
        }
        if let Some(w) = weights
            && w.len() != n
        {
            return Err(MixedModelError::DimensionMismatch { what: "weights".into(), expected: n, found: w.len() });
        }
        // Cluster codes → 0..J.
        let mut ids: Vec<u32> = cluster.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let n_clusters = ids.len();
        if n_clusters < 2 {
            return Err(MixedModelError::Robust { reason: format!("{n_clusters} cluster; CR2 needs at least 2") });
        }
        let cl: Vec<usize> = cluster.iter().map(|c| ids.binary_search(c).expect("present")).collect();
        // Nesting: each level of each grouping factor lies in one cluster.
        for term in &frame.random {
            let mut home = vec![usize::MAX; term.levels.len()];
            for (i, &code) in term.codes.iter().enumerate() {
                let h = &mut home[code as usize];
                if *h == usize::MAX {
                    *h = cl[i];
                } else if *h != cl[i] {
                    return Err(MixedModelError::Robust {
                        reason: format!(
                            "level `{}` of the grouping factor `{}` lies in more than one cluster: clusters must \
                             contain whole levels of every grouping factor (cluster by `{}` or a coarser variable)",
                            term.levels[code as usize], term.group, term.group
                        ),
                    });
                }
            }
        }
        // Fixed effects kept by the fit (aliased columns dropped), by name.
        let terms = terms.to_vec();
        let cols: Vec<usize> = terms
            .iter()
            .map(|t| frame.x_names.iter().position(|n| n == t).ok_or(MixedModelError::UnknownTerm { group: t.clone() }))
            .collect::<Result<_, _>>()?;
        let p = cols.len();
        if beta.len() != p {
            return Err(MixedModelError::DimensionMismatch { what: "beta".into(), expected: p, found: beta.len() });
        }
        let beta = beta.to_vec();
        // Λ per term, from θ in lme4's order.
        let lambdas = crate::fit::lambda_blocks(&frame.random, theta)?;
        // Rows of each cluster, grouped by weight.
        let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); n_clusters];
        for (i, &c) in cl.iter().enumerate() {
            rows_of[c].push(i);
        }
        let w = |i: usize| weights.map_or(1.0, |w| w[i]);
        let reduced: Vec<Reduced> = rows_of
            .iter()
            .map(|rows| {
                // The cluster's random-effect columns: (term, level, column).
                let mut zcols: Vec<(usize, u32)> = Vec::new();
                for (k, term) in frame.random.iter().enumerate() {
                    let mut levels: Vec<u32> = rows.iter().map(|&i| term.codes[i]).collect();
                    levels.sort_unstable();
                    levels.dedup();
                    zcols.extend(levels.into_iter().map(|l| (k, l)));
                }
                let mut start = Vec::with_capacity(zcols.len() + 1);
                let mut qj = 0;
                for &(k, _) in &zcols {
                    start.push(qj);
                    qj += frame.random[k].names.len();
                }
                let width = qj + p + 1;
                let mut by_weight: Vec<usize> = rows.clone();
                by_weight.sort_by(|&a, &b| w(a).total_cmp(&w(b)));
                let mut x_hat = Vec::new();
                let mut z_hat = Vec::new();
                let mut e_hat = Vec::new();
                let mut d = Vec::new();
                for group in by_weight.chunk_by(|&a, &b| w(a) == w(b)) {
                    let mut k = vec![0.0; group.len() * width];
                    for (g, &i) in group.iter().enumerate() {
                        let row = &mut k[g * width..(g + 1) * width];
                        for (c, &(t, level)) in zcols.iter().enumerate() {
                            let term = &frame.random[t];
                            if term.codes[i] != level {
                                continue;
                            }
                            let q = term.names.len();
                            let lam = &lambdas[t];
                            for b in 0..q {
                                // (z_i Λ)_b = Σ_a z_ia Λ_ab
                                row[start[c] + b] = (0..q).map(|a| term.z[[i, a]] * lam[a * q + b]).sum();
                            }
                        }
                        let mut fitted = 0.0;
                        for (j, &col) in cols.iter().enumerate() {
                            let v = frame.x[[i, col]];
                            row[qj + j] = v;
                            fitted += v * beta[j];
                        }
                        row[width - 1] = frame.y[i] - fitted;
                    }
                    let (r_mat, r) = project(k, group.len(), width);
                    for i in 0..r {
                        z_hat.extend_from_slice(&r_mat[i * width..i * width + qj]);
                        x_hat.extend_from_slice(&r_mat[i * width + qj..i * width + qj + p]);
                        e_hat.push(r_mat[i * width + width - 1]);
                        d.push(1.0 / w(group[0]));
                    }
                }
                let r = d.len();
                let mut t = matmul(&z_hat, &transpose(&z_hat, r, qj), r, qj, r);
                for (i, di) in d.iter().enumerate() {
                    t[i * r + i] += di;
                }
                Reduced { r, x: x_hat, t, e: e_hat }
            })
            .collect();
        // Bread.
        let mut info = vec![0.0; p * p];
        let mut t_inv = Vec::with_capacity(n_clusters);
        for c in &reduced {
            let ti = inverse(&c.t, c.r).ok_or_else(|| MixedModelError::Robust {
                reason: "a cluster's working covariance is singular".into(),
            })?;
            let tix = matmul(&ti, &c.x, c.r, c.r, p);
            let xtix = matmul(&transpose(&c.x, c.r, p), &tix, p, c.r, p);
            info.iter_mut().zip(&xtix).for_each(|(a, b)| *a += b);
            t_inv.push(ti);
        }
        let m = inverse(&info, p).ok_or_else(|| MixedModelError::Robust { reason: "X'V⁻¹X is singular".into() })?;
        // Adjustments, scores and the df ingredients.
        let mut meat = vec![0.0; p * p];
        let mut psi = Vec::with_capacity(n_clusters);
        let mut gamma = Vec::with_capacity(n_clusters);
        let (mut us, mut hs, mut hmats) =
            (Vec::with_capacity(n_clusters), Vec::with_capacity(n_clusters), Vec::with_capacity(n_clusters));
        for (c, ti) in reduced.iter().zip(&t_inv) {
            let r = c.r;
            let xt = transpose(&c.x, r, p);
            let xm = matmul(&c.x, &m, r, p, p);
            let xmx = matmul(&xm, &xt, r, p, r);
            let s: Vec<f64> = c.t.iter().zip(&xmx).map(|(a, b)| a - b).collect();
            let t_half = symmetric_power(&c.t, r, 0.5);
            let b = matmul(&matmul(&t_half, &s, r, r, r), &t_half, r, r, r);
            let b = symmetrize(b, r);
            let b_inv_half = symmetric_power(&b, r, -0.5);
            let a = matmul(&matmul(&t_half, &b_inv_half, r, r, r), &t_half, r, r, r);
            // E = X'T⁻¹A (p × r)
            let xt_ti = matmul(&xt, ti, p, r, r);
            let e_mat = matmul(&xt_ti, &a, p, r, r);
            let u = matmul(&e_mat, &c.e, p, r, 1);
            for i in 0..p {
                for j in 0..p {
                    meat[i * p + j] += u[i] * u[j];
                }
            }
            let et = transpose(&e_mat, p, r);
            psi.push(matmul(&matmul(&e_mat, &c.t, p, r, r), &et, p, r, p));
            gamma.push(matmul(&e_mat, &c.x, p, r, p));
            hs.push(matmul(&xt_ti, &c.e, p, r, 1));
            hmats.push(matmul(&xt_ti, &c.x, p, r, p));
            us.push(u);
        }
        let vcov = matmul(&matmul(&m, &meat, p, p, p), &m, p, p, p);
        Ok(Cr2 { n_clusters, terms, beta, vcov: symmetrize(vcov, p), m, psi, gamma, u: us, h: hs, hmat: hmats })
    }

    fn p(&self) -> usize {
        self.beta.len()
    }

    /// M·v, the bread (X'Θ⁻¹X)⁻¹ (σ² units) applied to `v`.
    pub fn bread_times(&self, v: &[f64]) -> Vec<f64> {
        matmul(&self.m, v, self.p(), self.p(), 1)
    }

    /// The GLS estimate of the frame's response at the given θ: β̂ + M Σ_j X_j'Θ_j⁻¹(y_j − X_jβ̂), where β̂ is
    /// the `beta` this variance was computed at (exact for any `beta`).
    pub fn gls_estimate(&self) -> Vec<f64> {
        let p = self.p();
        let mut sum = vec![0.0; p];
        for h in &self.h {
            sum.iter_mut().zip(h).for_each(|(s, x)| *s += x);
        }
        let d = matmul(&self.m, &sum, p, p, 1);
        self.beta.iter().zip(&d).map(|(b, x)| b + x).collect()
    }

    /// Satterthwaite df of the contrast `c · β` under the working model.
    fn df(&self, c: &[f64]) -> f64 {
        let p = self.p();
        let mc = matmul(&self.m, c, p, p, 1);
        let mut trace = 0.0;
        let mut sum_d2 = 0.0;
        let mut cross = 0.0;
        let mut nn = vec![0.0; p * p];
        // M v for a vector, in `out` (the sums in `matmul`'s order, zero entries of M skipped as it does).
        let times = |a: &[f64], v: &[f64], out: &mut [f64], transposed: bool| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = 0.0;
                for l in 0..p {
                    let x = if transposed { a[l * p + i] } else { a[i * p + l] };
                    if x != 0.0 {
                        *o += x * v[l];
                    }
                }
            }
        };
        let (mut pm, mut t, mut mt) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
        for (psi, gamma) in self.psi.iter().zip(&self.gamma) {
            times(psi, &mc, &mut pm, false);
            let d: f64 = mc.iter().zip(&pm).map(|(a, b)| a * b).sum();
            // t = Γ' m
            times(gamma, &mc, &mut t, true);
            times(&self.m, &t, &mut mt, false);
            let tmt: f64 = t.iter().zip(&mt).map(|(a, b)| a * b).sum();
            trace += d - tmt;
            sum_d2 += d * d;
            cross += d * tmt;
            for i in 0..p {
                for j in 0..p {
                    nn[i * p + j] += t[i] * t[j];
                }
            }
        }
        let nm = matmul(&nn, &self.m, p, p, p);
        let nmnm: f64 = (0..p).map(|i| (0..p).map(|j| nm[i * p + j] * nm[j * p + i]).sum::<f64>()).sum();
        let frob = sum_d2 - 2.0 * cross + nmnm;
        trace * trace / frob
    }

    /// The test of the contrast `l · β` with its CR2 standard error and Satterthwaite df.
    pub fn contrast(&self, l: &[f64]) -> Result<ContrastTest, MixedModelError> {
        let p = self.p();
        if l.len() != p {
            return Err(MixedModelError::DimensionMismatch { what: "contrast".into(), expected: p, found: l.len() });
        }
        let estimate: f64 = l.iter().zip(&self.beta).map(|(a, b)| a * b).sum();
        let vl = matmul(&self.vcov, l, p, p, 1);
        let var: f64 = l.iter().zip(&vl).map(|(a, b)| a * b).sum();
        // A NaN variance stays NaN (f64::max would turn it into 0, an interval of width 0).
        let std_error = if var.is_nan() { f64::NAN } else { var.max(0.0).sqrt() };
        let df = self.df(l);
        let statistic = estimate / std_error;
        let p_value = if df.is_finite() && df > 0.0 && statistic.is_finite() {
            StudentsT::new(0.0, 1.0, df).map(|d| 2.0 * d.sf(statistic.abs())).unwrap_or(f64::NAN)
        } else {
            f64::NAN
        };
        Ok(ContrastTest { estimate, std_error, statistic, df: Some(df), p_value })
    }

    /// Every fixed effect with its CR2 SE, Satterthwaite df and p value.
    pub fn fixed_effects(&self) -> Vec<FixedEffect> {
        let p = self.p();
        (0..p)
            .map(|k| {
                let mut l = vec![0.0; p];
                l[k] = 1.0;
                let t = self.contrast(&l).expect("length p");
                FixedEffect {
                    term: self.terms[k].clone(),
                    estimate: t.estimate,
                    std_error: t.std_error,
                    statistic: t.statistic,
                    df: t.df,
                    p_value: t.p_value,
                }
            })
            .collect()
    }

    /// The wild cluster bootstrap-t test of `l·β = 0` (restricted: residuals of the fit under the null, the
    /// variance parameters θ held at their estimates), with CR2 standard errors in every draw, and the 95%
    /// interval by test inversion (the same draws for every null value). `draws` ≥ 99; deterministic for a
    /// `seed` whatever the thread count (draw b uses its own stream).
    ///
    /// With θ fixed, a draw's β* is a linear function of the cluster weights, so each draw costs O(J·p) from
    /// per-cluster quantities computed once (no refit, no factorization).
    pub fn wild_bootstrap(
        &self,
        l: &[f64],
        draws: usize,
        weights: BootstrapWeights,
        seed: u64,
    ) -> Result<WildBootstrap, MixedModelError> {
        use rand::RngExt;
        use rand::SeedableRng;
        use rayon::prelude::*;
        let p = self.p();
        if l.len() != p {
            return Err(MixedModelError::DimensionMismatch { what: "contrast".into(), expected: p, found: l.len() });
        }
        if draws < 99 {
            return Err(MixedModelError::Robust { reason: format!("{draws} bootstrap draws; at least 99 are needed") });
        }
        let j = self.n_clusters;
        // Cluster weights, draw-major: w[b * J + j].
        let w: Vec<f64> = (0..draws)
            .into_par_iter()
            .flat_map_iter(|b| {
                let mut rng =
                    rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let half = std::f64::consts::FRAC_1_SQRT_2;
                let webb = [-(1.5f64.sqrt()), -1.0, -half, half, 1.0, 1.5f64.sqrt()];
                (0..j)
                    .map(|_| match weights {
                        BootstrapWeights::Rademacher => {
                            if rng.random_bool(0.5) {
                                1.0
                            } else {
                                -1.0
                            }
                        }
                        BootstrapWeights::Webb => webb[rng.random_range(0..6)],
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let a = matmul(&self.m, l, p, p, 1); // M L
        let lma: f64 = l.iter().zip(&a).map(|(x, y)| x * y).sum();
        let estimate: f64 = l.iter().zip(&self.beta).map(|(x, y)| x * y).sum();
        let vl = matmul(&self.vcov, l, p, p, 1);
        let var: f64 = l.iter().zip(&vl).map(|(x, y)| x * y).sum();
        let se = if var.is_nan() { f64::NAN } else { var.max(0.0).sqrt() };
        if !(se.is_finite() && se > 0.0) {
            return Err(MixedModelError::Robust {
                reason: format!("the contrast's CR2 standard error is {se}; no bootstrap test is possible"),
            });
        }
        // Per-cluster constants that do not depend on the null value.
        let g: Vec<Vec<f64>> = self.gamma.iter().map(|gm| matmul(&transpose(gm, p, p), &a, p, p, 1)).collect();
        // The bootstrap p value of the null `l·β = c`.
        let p_of = |c: f64, t_obs: f64| -> f64 {
            // Restricted fit: β̃ − β̂ = Δ = −M L (L'M L)⁻¹ (L'β̂ − c).
            let scale = (estimate - c) / lma;
            let delta: Vec<f64> = a.iter().map(|v| -v * scale).collect();
            // Restricted per-cluster vectors: h̃_j = h_j − H_j Δ, k̃_j = u_j − Γ_j Δ; s_j = a·k̃_j.
            let ht: Vec<Vec<f64>> = self
                .h
                .iter()
                .zip(&self.hmat)
                .map(|(h, hm)| {
                    let hd = matmul(hm, &delta, p, p, 1);
                    h.iter().zip(&hd).map(|(x, y)| x - y).collect()
                })
                .collect();
            let sj: Vec<f64> = self
                .u
                .iter()
                .zip(&self.gamma)
                .map(|(u, gm)| {
                    let gd = matmul(gm, &delta, p, p, 1);
                    u.iter().zip(&gd).zip(&a).map(|((x, y), z)| (x - y) * z).sum()
                })
                .collect();
            let exceed: usize = (0..draws)
                .into_par_iter()
                .map(|b| {
                    let wb = &w[b * j..(b + 1) * j];
                    let mut sum_h = vec![0.0; p];
                    for (wj, hj) in wb.iter().zip(&ht) {
                        for (s, x) in sum_h.iter_mut().zip(hj) {
                            *s += wj * x;
                        }
                    }
                    let d = matmul(&self.m, &sum_h, p, p, 1); // δ = β* − β̃
                    let num: f64 = l.iter().zip(&d).map(|(x, y)| x * y).sum();
                    let var: f64 = wb
                        .iter()
                        .zip(&sj)
                        .zip(&g)
                        .map(|((wj, s), gj)| {
                            let v = wj * s - gj.iter().zip(&d).map(|(x, y)| x * y).sum::<f64>();
                            v * v
                        })
                        .sum();
                    // Draws with all weights equal reproduce ±t_obs up to rounding: a relative tolerance.
                    usize::from(var > 0.0 && (num / var.sqrt()).abs() >= t_obs.abs() * (1.0 - 1e-10))
                })
                .sum();
            exceed as f64 / draws as f64
        };
        let t_statistic = estimate / se;
        let p_value = p_of(0.0, t_statistic);
        // Test inversion: the interval of null values c with p(c) > 0.05 (the same draws for every c).
        let t_at = |c: f64| (estimate - c) / se;
        let (ci_low, ci_high) = test_inversion(estimate, se, |c| p_of(c, t_at(c)) > 0.05);
        Ok(WildBootstrap { draws, weights, t_statistic, p_value, ci_low, ci_high })
    }

    /// The bootstrap t statistic of one draw with cluster weights `w` (in cluster-code order) under the null
    /// `l·β = c`: the restricted bootstrap sample y* = Xβ̃ + w_j (y − Xβ̃) refitted by GLS with θ fixed, and its
    /// CR2 t statistic. The same formulas as [`Cr2::wild_bootstrap`]; exposed to check them by brute force.
    pub fn bootstrap_t(&self, l: &[f64], c: f64, w: &[f64]) -> f64 {
        let p = self.p();
        let a = matmul(&self.m, l, p, p, 1);
        let lma: f64 = l.iter().zip(&a).map(|(x, y)| x * y).sum();
        let estimate: f64 = l.iter().zip(&self.beta).map(|(x, y)| x * y).sum();
        let scale = (estimate - c) / lma;
        let delta: Vec<f64> = a.iter().map(|v| -v * scale).collect();
        let mut sum_h = vec![0.0; p];
        for ((wj, h), hm) in w.iter().zip(&self.h).zip(&self.hmat) {
            let hd = matmul(hm, &delta, p, p, 1);
            for ((s, x), y) in sum_h.iter_mut().zip(h).zip(&hd) {
                *s += wj * (x - y);
            }
        }
        let d = matmul(&self.m, &sum_h, p, p, 1);
        let num: f64 = l.iter().zip(&d).map(|(x, y)| x * y).sum();
        let var: f64 = w
            .iter()
            .zip(&self.u)
            .zip(&self.gamma)
            .map(|((wj, u), gm)| {
                let gd = matmul(gm, &delta, p, p, 1);
                let s: f64 = u.iter().zip(&gd).zip(&a).map(|((x, y), z)| (x - y) * z).sum();
                let g = matmul(&transpose(gm, p, p), &a, p, p, 1);
                let v = wj * s - g.iter().zip(&d).map(|(x, y)| x * y).sum::<f64>();
                v * v
            })
            .sum();
        num / var.sqrt()
    }

    /// The HTZ Wald test of the q constraints `c β = 0` (each row of `c` has length p).
    pub fn wald(&self, c: &[Vec<f64>]) -> Result<WaldTest, MixedModelError> {
        let p = self.p();
        let q = c.len();
        if q == 0 {
            return Err(MixedModelError::DimensionMismatch { what: "constraints".into(), expected: 1, found: 0 });
        }
        if let Some(row) = c.iter().find(|r| r.len() != p) {
            return Err(MixedModelError::DimensionMismatch {
                what: "constraint".into(),
                expected: p,
                found: row.len(),
            });
        }
        let cm: Vec<f64> = c.iter().flatten().copied().collect(); // q × p
        let cb = matmul(&cm, &self.beta, q, p, 1);
        let cvc = matmul(&matmul(&cm, &self.vcov, q, p, p), &transpose(&cm, q, p), q, p, q);
        let mut chol = cvc.clone();
        if !cholesky(&mut chol, q) {
            return Err(MixedModelError::Robust {
                reason: "the constraints' CR2 covariance is not positive definite (are they linearly dependent?)"
                    .into(),
            });
        }
        let cvc_inv = inverse(&cvc, q).expect("positive definite");
        let q_stat: f64 = (0..q).map(|i| (0..q).map(|j| cb[i] * cvc_inv[i * q + j] * cb[j]).sum::<f64>()).sum();
        // Ω = Σ C M (Ψ_j − Γ_j M Γ_j') M C'
        let cmm = matmul(&cm, &self.m, q, p, p); // q × p
        let cmm_t = transpose(&cmm, q, p);
        let mut omega = vec![0.0; q * q];
        for (psi, gamma) in self.psi.iter().zip(&self.gamma) {
            let gmg = matmul(&matmul(gamma, &self.m, p, p, p), &transpose(gamma, p, p), p, p, p);
            let inner: Vec<f64> = psi.iter().zip(&gmg).map(|(a, b)| a - b).collect();
            let o = matmul(&matmul(&cmm, &inner, q, p, p), &cmm_t, q, p, q);
            omega.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
        let omega_inv_half = symmetric_power(&symmetrize(omega, q), q, -0.5);
        let ct = matmul(&omega_inv_half, &cm, q, q, p); // C̃ (q × p)
        let ctm = matmul(&ct, &self.m, q, p, p); // C̃ M
        let ctm_t = transpose(&ctm, q, p);
        // L with L L' = M.
        let mut l = self.m.clone();
        if !cholesky(&mut l, p) {
            return Err(MixedModelError::Robust { reason: "the bread is not positive definite".into() });
        }
        for i in 0..p {
            for j in i + 1..p {
                l[i * p + j] = 0.0;
            }
        }
        let qp = q * p;
        let mut s = vec![0.0; qp * qp];
        let (mut sum_tr_d2, mut sum_trd_sq, mut cross_tr, mut cross_sq) = (0.0, 0.0, 0.0, 0.0);
        for (psi, gamma) in self.psi.iter().zip(&self.gamma) {
            let d = matmul(&matmul(&ctm, psi, q, p, p), &ctm_t, q, p, q);
            let k = matmul(&matmul(&ctm, gamma, q, p, p), &l, q, p, p); // q × p
            let tr_d: f64 = (0..q).map(|i| d[i * q + i]).sum();
            let k_norm2: f64 = k.iter().map(|x| x * x).sum();
            let kk = matmul(&k, &transpose(&k, q, p), q, p, q);
            let tr_dkk: f64 = (0..q).map(|i| (0..q).map(|j| d[i * q + j] * kk[j * q + i]).sum::<f64>()).sum();
            let tr_d2: f64 = (0..q).map(|i| (0..q).map(|j| d[i * q + j] * d[j * q + i]).sum::<f64>()).sum();
            sum_tr_d2 += tr_d2;
            sum_trd_sq += tr_d * tr_d;
            cross_tr += tr_d * k_norm2;
            cross_sq += tr_dkk;
            // v = vec(K) with index (s, m) → s·p + m.
            for a in 0..qp {
                let ka = k[a];
                if ka != 0.0 {
                    for b in 0..qp {
                        s[a * qp + b] += ka * k[b];
                    }
                }
            }
        }
        let s_frob2: f64 = s.iter().map(|x| x * x).sum();
        let mut s4 = 0.0;
        for si in 0..q {
            for mi in 0..p {
                for ti in 0..q {
                    for ni in 0..p {
                        s4 += s[(si * p + mi) * qp + ti * p + ni] * s[(ti * p + mi) * qp + si * p + ni];
                    }
                }
            }
        }
        let sum_tr_sq = sum_trd_sq - 2.0 * cross_tr + s_frob2;
        let sum_tr_b2 = sum_tr_d2 - 2.0 * cross_sq + s4;
        let nu = (q * (q + 1)) as f64 / (sum_tr_b2 + sum_tr_sq);
        let qf = q as f64;
        let delta = ((nu - qf + 1.0) / nu).max(0.0);
        let df_den = nu - qf + 1.0;
        let f_statistic = delta * q_stat / qf;
        let p_value = if df_den > 0.0 && df_den.is_finite() && f_statistic.is_finite() {
            FisherSnedecor::new(qf, df_den).map(|d| d.sf(f_statistic)).unwrap_or(f64::NAN)
        } else {
            f64::NAN
        };
        Ok(WaldTest { df_num: q, df_den, f_statistic, q_statistic: q_stat, p_value })
    }
}

/// The interval of null values c that a test does not reject (`accepted(c)`), around `centre` (accepted):
/// each limit is searched outwards in doubling steps from `step`, then bisected 50 times. A side on which no
/// value is rejected within 2⁶⁰ steps is unbounded (e.g. a bootstrap with very few clusters).
pub(crate) fn test_inversion(centre: f64, step: f64, accepted: impl Fn(f64) -> bool) -> (f64, f64) {
    let bound = |sign: f64| -> f64 {
        let mut inside = centre;
        let mut step = step.max(f64::MIN_POSITIVE);
        let mut outside = centre + sign * step;
        let mut tries = 0;
        while accepted(outside) && tries < 60 {
            inside = outside;
            step *= 2.0;
            outside = centre + sign * step;
            tries += 1;
        }
        if tries == 60 {
            return sign * f64::INFINITY;
        }
        for _ in 0..50 {
            let mid = 0.5 * (inside + outside);
            if accepted(mid) {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        0.5 * (inside + outside)
    };
    (bound(-1.0), bound(1.0))
}

fn symmetrize(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for i in 0..n {
        for j in i + 1..n {
            let v = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_and_powers() {
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let h = symmetric_power(&a, 3, 0.5);
        let back = matmul(&h, &h, 3, 3, 3);
        for (x, y) in back.iter().zip(&a) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        let ih = symmetric_power(&a, 3, -0.5);
        let id = matmul(&matmul(&ih, &a, 3, 3, 3), &ih, 3, 3, 3);
        for i in 0..3 {
            for j in 0..3 {
                assert!((id[i * 3 + j] - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn projection_preserves_inner_products() {
        // Columns: two of K (one a multiple of the other: rank 1 + 1) and a response.
        let rows = 5;
        let k: Vec<f64> = (0..rows)
            .flat_map(|i| {
                let x = i as f64;
                [1.0, x, 2.0, (x * 0.7).sin()]
            })
            .collect();
        let (r, rank) = project(k.clone(), rows, 4);
        assert_eq!(rank, 2, "the constant column and its double are one direction");
        // K'K = R'R for every pair of columns (R = Q'K).
        for a in 0..4 {
            for b in 0..3 {
                let kk: f64 = (0..rows).map(|i| k[i * 4 + a] * k[i * 4 + b]).sum();
                let rr: f64 = (0..rank).map(|i| r[i * 4 + a] * r[i * 4 + b]).sum();
                assert!((kk - rr).abs() < 1e-10 * kk.abs().max(1.0), "({a},{b}): {kk} vs {rr}");
            }
        }
    }
}
