//! The data of a binomial GLMM laid out by level of its grouping factor (rows of level `g` contiguous, X also
//! blocked column-major per level), with the validation that builds it, and the link-scale helpers every
//! stage shares (the logistic function, μ with the deviance residual, Λ from θ).

use psmeval_frame::ModelFrame;
use rayon::prelude::*;
use statrs::function::gamma::ln_gamma;

use super::GlmmOptions;
use crate::dense::cholesky;
use crate::error::MixedModelError;
use crate::validate::{validate_frame, validate_weights};

/// Data laid out by group: rows of level `g` are `starts[g]..starts[g + 1]`.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) n: usize,
    pub(super) p: usize,
    pub(super) q: usize,
    /// n × p, row-major, sorted by group.
    pub(super) x: Vec<f64>,
    /// The same X blocked by group, each block column-major (the rows of level `g` and column `k` are
    /// `xg[starts[g] * p + k * n_g..][..n_g]`), so `X β` of one level is a few contiguous vector updates.
    pub(super) xg: Vec<f64>,
    /// n × q, row-major, sorted by group.
    pub(super) z: Vec<f64>,
    pub(super) y: Vec<f64>,
    pub(super) w: Vec<f64>,
    /// `y log y + (1 - y) log(1 - y)` per row (0 for 0/1 responses).
    pub(super) sat: Vec<f64>,
    pub(super) starts: Vec<usize>,
    /// −2 × the saturated log-likelihood (with binomial coefficients): glmer's `aic()` minus deviance.
    pub(super) c_const: f64,
}

/// The logistic function `1 / (1 + e^(-η))`, evaluated without overflow.
pub(super) fn logistic(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// μ and the deviance residual `2 w [sat - y η + log(1 + e^η)]` from η with one `exp` and one `ln`
/// (`ln(1 + e)` with `e = exp(-|η|) ≤ 1` is exact to ~1e-16 absolute, all a deviance needs, and a plain `ln`
/// costs about half of `ln_1p`, the largest cost of a fit).
pub(super) fn mu_dev(eta: f64, y: f64, w: f64, sat: f64) -> (f64, f64) {
    let e = (-eta.abs()).exp();
    let mu = if eta >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
    let softplus = eta.max(0.0) + (1.0 + e).ln();
    (mu, 2.0 * w * (sat - y * eta + softplus))
}

/// μ from η, the same bits as [`mu_dev`]'s, without the deviance's logarithm.
pub(super) fn mu_only(eta: f64) -> f64 {
    let e = (-eta.abs()).exp();
    if eta >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}

/// Λ (q × q, row-major lower triangular) from θ (lower triangle by columns).
pub(super) fn lambda(theta: &[f64], q: usize) -> Vec<f64> {
    let mut lam = vec![0.0; q * q];
    let mut t = 0;
    for j in 0..q {
        for i in j..q {
            lam[i * q + j] = theta[t];
            t += 1;
        }
    }
    lam
}

impl Problem {
    /// `Λ' z_i` for row `i`.
    pub(super) fn zl(&self, lam: &[f64], i: usize, out: &mut [f64]) {
        let q = self.q;
        for (a, o) in out.iter_mut().enumerate() {
            *o = (0..q).map(|r| lam[r * q + a] * self.z[i * q + r]).sum();
        }
    }

    /// `X β` for the rows of level `g` into `out` (length n_g), summed over columns in order.
    pub(super) fn group_offset(&self, beta: &[f64], g: usize, out: &mut [f64]) {
        let (lo, len) = (self.starts[g], self.starts[g + 1] - self.starts[g]);
        out.iter_mut().for_each(|o| *o = 0.0);
        let block = &self.xg[lo * self.p..(lo + len) * self.p];
        for (col, &b) in block.chunks_exact(len.max(1)).zip(beta) {
            out.iter_mut().zip(col).for_each(|(o, &x)| *o += x * b);
        }
    }

    /// `X β` for all rows (in parallel over levels; each row's sum in column order whatever the threads).
    pub(super) fn eta_fixed(&self, beta: &[f64]) -> Vec<f64> {
        let mut off = vec![0.0; self.n];
        let mut parts = Vec::with_capacity(self.n_groups());
        let mut rest = off.as_mut_slice();
        for g in 0..self.n_groups() {
            let (head, tail) = rest.split_at_mut(self.starts[g + 1] - self.starts[g]);
            parts.push((g, head));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(g, out)| self.group_offset(beta, g, out));
        off
    }

    pub(super) fn n_groups(&self) -> usize {
        self.starts.len() - 1
    }
}

/// Checks a GLMM frame before anything is computed: the shared checks of shape and finiteness, the weights,
/// responses in {0, 1} (no weights) or [0, 1] (proportions), not all equal, and one scalar term for adaptive
/// quadrature.
pub(super) fn validate(frame: &ModelFrame, opts: &GlmmOptions) -> Result<(), MixedModelError> {
    validate_frame(frame)?;
    let n = frame.y.len();
    if let Some(w) = &opts.weights {
        validate_weights(w, n)?;
    }
    for (i, &y) in frame.y.iter().enumerate() {
        if opts.weights.is_none() && y != 0.0 && y != 1.0 {
            return Err(MixedModelError::ResponseNotBinary { row: i + 1, value: y });
        }
        if !(0.0..=1.0).contains(&y) {
            return Err(MixedModelError::ProportionOutOfRange { row: i + 1, value: y });
        }
    }
    if frame.y.iter().all(|&y| y == 0.0) || frame.y.iter().all(|&y| y == 1.0) {
        return Err(MixedModelError::CompleteSeparation { value: frame.y[0] });
    }
    if opts.nagq > MAX_NAGQ {
        return Err(MixedModelError::InvalidOption {
            option: "nagq".into(),
            value: opts.nagq.to_string(),
            reason: format!("at most {MAX_NAGQ} quadrature points (glmer's limit)"),
        });
    }
    if opts.nagq > 1 && frame.random.len() > 1 {
        // glmer: "nAGQ > 1 is only available for models with a single, scalar random-effects term".
        let k = frame.random.len();
        return Err(MixedModelError::NotYetSupported {
            what: format!(
                "adaptive quadrature (nagq = {}) with {k} random-effects terms; use nagq = 1 (Laplace)",
                opts.nagq
            ),
        });
    }
    if opts.nagq > 1 && frame.random[0].z.ncols() != 1 {
        return Err(MixedModelError::NotYetSupported { what: "adaptive quadrature with a vector random term".into() });
    }
    Ok(())
}

/// The most adaptive Gauss–Hermite points (glmer refuses more than 25).
pub const MAX_NAGQ: usize = 25;

/// Per row `y log y + (1 - y) log(1 - y)`, and −2 × the saturated log-likelihood with binomial coefficients
/// (glmer's `aic()` minus deviance), for responses `y` (proportions) with prior weights `w` (totals).
pub(super) fn binomial_constants(y: &[f64], w: &[f64]) -> (Vec<f64>, f64) {
    let sat: Vec<f64> = y
        .iter()
        .map(|&y| if y > 0.0 { y * y.ln() } else { 0.0 } + if y < 1.0 { (1.0 - y) * (1.0 - y).ln() } else { 0.0 })
        .collect();
    let c_const = -2.0
        * y.iter()
            .zip(w)
            .zip(&sat)
            .map(|((&y, &m), &sat)| {
                let s = (m * y).round();
                let mr = m.round();
                let lchoose = ln_gamma(mr + 1.0) - ln_gamma(s + 1.0) - ln_gamma(mr - s + 1.0);
                lchoose + m * sat
            })
            .sum::<f64>();
    (sat, c_const)
}

/// `RankDeficient` naming the first column of X (n × p, row-major) that is numerically dependent on earlier
/// ones (pivot of the scaled X'X below 1e-5).
pub(super) fn check_rank(x: &[f64], n: usize, p: usize, names: &[String]) -> Result<(), MixedModelError> {
    let mut xtx = vec![0.0; p * p];
    for i in 0..n {
        for a in 0..p {
            for b in 0..p {
                xtx[a * p + b] += x[i * p + a] * x[i * p + b];
            }
        }
    }
    let scale: Vec<f64> = (0..p).map(|a| xtx[a * p + a].sqrt().max(1e-300)).collect();
    for a in 0..p {
        for b in 0..p {
            xtx[a * p + b] /= scale[a] * scale[b];
        }
    }
    for j in 0..p {
        let mut sub: Vec<f64> =
            (0..=j).flat_map(|a| (0..=j).map(move |b| (a, b))).map(|(a, b)| xtx[a * p + b]).collect();
        if !cholesky(&mut sub, j + 1) || sub[j * (j + 1) + j].powi(2) < 1e-10 {
            return Err(MixedModelError::RankDeficient { column: names[j].clone() });
        }
    }
    Ok(())
}

/// Lays out a validated frame by group (returning the row order used), after checking that X has full column
/// rank.
pub(super) fn problem(frame: &ModelFrame, opts: &GlmmOptions) -> Result<(Problem, Vec<usize>), MixedModelError> {
    let n = frame.y.len();
    let w = opts.weights.clone().unwrap_or_else(|| vec![1.0; n]);
    let term = &frame.random[0];
    let (p, q) = (frame.x.ncols(), term.z.ncols());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| term.codes[i]);
    let n_levels = term.levels.len();
    let mut starts = vec![0usize; n_levels + 1];
    for &c in &term.codes {
        starts[c as usize + 1] += 1;
    }
    for g in 0..n_levels {
        starts[g + 1] += starts[g];
    }
    let x: Vec<f64> = order.iter().flat_map(|&i| frame.x.row(i).to_vec()).collect();
    let z: Vec<f64> = order.iter().flat_map(|&i| term.z.row(i).to_vec()).collect();
    let y: Vec<f64> = order.iter().map(|&i| frame.y[i]).collect();
    let w: Vec<f64> = order.iter().map(|&i| w[i]).collect();
    let (sat, c_const) = binomial_constants(&y, &w);
    check_rank(&x, n, p, &frame.x_names)?;
    let mut xg = vec![0.0; n * p];
    for g in 0..n_levels {
        let (lo, len) = (starts[g], starts[g + 1] - starts[g]);
        for r in 0..len {
            for k in 0..p {
                xg[lo * p + k * len + r] = x[(lo + r) * p + k];
            }
        }
    }
    Ok((Problem { n, p, q, x, xg, z, y, w, sat, starts, c_const }, order))
}
