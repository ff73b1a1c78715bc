//! Covariate balance before and after matching, computed as MatchIt's `summary.matchit` computes it
//! (`bal1var`, `qqsum`, `wvar`, `pooled_sd` and `nn` in MatchIt 4.5–4.7, `standardize = TRUE`).
//!
//! Balance depends on covariates, treatment and weights only. Pass the covariates with factors expanded to
//! *all* their levels (as `summary.matchit` does, unlike the model matrix) and, to get MatchIt's
//! `distance` row, the distance as the first column named `distance`.
//!
//! Per covariate, following MatchIt:
//! - means: weighted means in each group (weights = matching weights × sampling weights);
//! - standardized mean difference: the difference in means divided by the standard deviation of the
//!   treated group (`s.d.denom = "treated"`, ATT) computed in the *full* sample with sampling weights only,
//!   the same denominator before and after matching. Binary (0/1) variables are standardized too, by
//!   `sqrt(p·(1 − p))` (MatchIt does not report binary variables raw; that is cobalt's default). If the
//!   difference is at most `sqrt(DBL_EPSILON)` in absolute value the raw difference is reported; if the
//!   denominator is below `sqrt(DBL_EPSILON)` MatchIt's pooled SD is used instead;
//! - variance ratio (treated/control, weighted `cov.wt`-style variances): `None` for binary variables;
//! - eCDF mean and max: mean and maximum over the distinct values of the variable (in the whole sample,
//!   including units with weight 0) of the absolute difference between the groups' weighted eCDFs; for
//!   binary variables both equal the absolute difference in proportions.
//!
//! When both groups have fewer than two units with non-zero weight, MatchIt reports `NA`: here the SMD of a
//! non-negligible difference and the variance ratio are `None` and the eCDF statistics `NaN`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use ndarray::ArrayView2;

const SQRT_EPS: f64 = 1.490_116_119_384_765_6e-8;

/// Which standard deviation standardizes mean differences (MatchIt's `s.d.denom`, from the estimand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SdDenominator {
    /// SD of the treated group (ATT), MatchIt's default.
    #[default]
    Treated,
    /// SD of the control group (ATC).
    Control,
    /// Square root of the mean of the two groups' variances (ATE).
    Pooled,
}

/// Options of [`balance_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BalanceOptions<'a> {
    /// Standardization (default: treated, i.e. ATT).
    pub sd_denominator: SdDenominator,
    /// Sampling weights (MatchIt's `s.weights`), one per unit; default 1.
    pub sampling_weights: Option<&'a [f64]>,
    /// Units discarded for lack of common support (for the sample-size table only).
    pub discarded: Option<&'a [bool]>,
}

/// Balance statistics of one covariate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceRow {
    /// Covariate name.
    pub term: String,
    /// Weighted mean among treated units.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub mean_treated: f64,
    /// Weighted mean among controls.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub mean_control: f64,
    /// Standardized mean difference (see the module doc); `None` where MatchIt reports `NA`.
    pub smd: Option<f64>,
    /// Ratio of weighted variances, treated/control; `None` for binary variables, too-small groups, or a
    /// zero control variance.
    pub var_ratio: Option<f64>,
    /// Mean absolute difference of the weighted eCDFs.
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub ecdf_mean: f64,
    /// Maximum absolute difference of the weighted eCDFs (Kolmogorov–Smirnov statistic).
    #[serde(deserialize_with = "crate::nan::f64_or_nan")]
    pub ecdf_max: f64,
    /// Whether the variable is binary (all values 0 or 1).
    pub binary: bool,
}

/// Sample sizes of one treatment group (a column of MatchIt's `nn` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSizes {
    /// Effective sample size of the full sample under the sampling weights.
    pub all_ess: f64,
    /// Units.
    pub all: usize,
    /// Effective sample size `(Σw)²/Σw²` under the matching × sampling weights.
    pub matched_ess: f64,
    /// Units with positive weight.
    pub matched: usize,
    /// Units with zero weight that were not discarded.
    pub unmatched: usize,
    /// Units discarded.
    pub discarded: usize,
}

/// Sample sizes by group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSizes {
    /// Controls.
    pub control: GroupSizes,
    /// Treated units.
    pub treated: GroupSizes,
}

/// A balance table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceTable {
    /// One row per covariate, in input order.
    pub rows: Vec<BalanceRow>,
    /// The standardization used.
    pub sd_denominator: SdDenominator,
    /// Whether matching weights were given (false: the full, unmatched sample).
    pub weighted: bool,
    /// Sample sizes.
    pub n: SampleSizes,
}

/// Why balance could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum BalanceError {
    /// An input has the wrong length.
    #[error("{what} has length {found}, but there are {expected}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// A covariate value is NaN or infinite.
    #[error("covariate `{term}` is not finite in row {row} ({value})")]
    NonFiniteCovariate {
        /// Covariate.
        term: String,
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// A weight is negative or not finite.
    #[error("{} weight in row {row} is {value}; weights must be finite and non-negative", if *sampling { "sampling" } else { "matching" })]
    InvalidWeight {
        /// Sampling (true) or matching (false) weight.
        sampling: bool,
        /// Row (0-based).
        row: usize,
        /// The value.
        value: f64,
    },
    /// A treatment group has no unit with positive weight.
    #[error("the {} group has no unit with positive weight", if *treated { "treated" } else { "control" })]
    EmptyGroup {
        /// Which group.
        treated: bool,
    },
}

/// Balance for the ATT (`s.d.denom = "treated"`), no sampling weights; `weights = None` is the full sample.
pub fn balance(
    covariates: ArrayView2<f64>,
    names: &[String],
    treat: &[bool],
    weights: Option<&[f64]>,
) -> Result<BalanceTable, BalanceError> {
    balance_with(covariates, names, treat, weights, &BalanceOptions::default())
}

/// Balance with explicit options (standardization, sampling weights, discarded units).
pub fn balance_with(
    covariates: ArrayView2<f64>,
    names: &[String],
    treat: &[bool],
    weights: Option<&[f64]>,
    options: &BalanceOptions<'_>,
) -> Result<BalanceTable, BalanceError> {
    check_lengths(covariates, names, treat)?;
    let w = Weighting::new(treat, weights, options)?;
    check_covariates(covariates, names)?;
    w.check_groups(treat)?;
    let rows = (0..covariates.ncols())
        .into_par_iter()
        .map(|j| {
            let x: Vec<f64> = covariates.column(j).to_vec();
            bal1var(&names[j], &x, treat, &w, None)
        })
        .collect();
    Ok(w.table(rows, treat, options))
}

/// Balance before matching (weights 1, as [`balance_with`] with no weights and no discarded units) and after
/// (`weights`, with `options` as given), computed together: each covariate is sorted once for both tables'
/// eCDF statistics. The tables equal those of the two separate calls.
pub fn balance_before_after(
    covariates: ArrayView2<f64>,
    names: &[String],
    treat: &[bool],
    weights: &[f64],
    options: &BalanceOptions<'_>,
) -> Result<(BalanceTable, BalanceTable), BalanceError> {
    check_lengths(covariates, names, treat)?;
    let before_options = BalanceOptions { discarded: None, ..*options };
    let before = Weighting::new(treat, None, &before_options)?;
    let after = Weighting::new(treat, Some(weights), options)?;
    check_covariates(covariates, names)?;
    before.check_groups(treat)?;
    after.check_groups(treat)?;
    let (rows_before, rows_after): (Vec<BalanceRow>, Vec<BalanceRow>) = (0..covariates.ncols())
        .into_par_iter()
        .map(|j| {
            let x: Vec<f64> = covariates.column(j).to_vec();
            let ord = (!is_binary(&x)).then(|| order(&x));
            (
                bal1var(&names[j], &x, treat, &before, ord.as_deref()),
                bal1var(&names[j], &x, treat, &after, ord.as_deref()),
            )
        })
        .unzip();
    Ok((before.table(rows_before, treat, &before_options), after.table(rows_after, treat, options)))
}

/// The lengths of the treatment indicators and the names (checked first, then the weights, the covariates'
/// values and the groups).
fn check_lengths(covariates: ArrayView2<f64>, names: &[String], treat: &[bool]) -> Result<(), BalanceError> {
    let (n, k) = covariates.dim();
    if treat.len() != n {
        return Err(BalanceError::LengthMismatch { what: "treat", expected: n, found: treat.len() });
    }
    if names.len() != k {
        return Err(BalanceError::LengthMismatch { what: "names", expected: k, found: names.len() });
    }
    Ok(())
}

/// Every covariate value finite.
fn check_covariates(covariates: ArrayView2<f64>, names: &[String]) -> Result<(), BalanceError> {
    for (j, c) in covariates.columns().into_iter().enumerate() {
        if let Some((row, &value)) = c.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(BalanceError::NonFiniteCovariate { term: names[j].clone(), row, value });
        }
    }
    Ok(())
}

/// The weights of one balance table: `ww` = matching × sampling weights (the means, variance ratios and
/// eCDFs), `sw` = sampling weights (the standardizing SD).
struct Weighting {
    ww: Vec<f64>,
    sw: Vec<f64>,
    denom: SdDenominator,
    weighted: bool,
}

impl Weighting {
    /// The weights after their checks (lengths, finite and non-negative; the groups by [`Weighting::check_groups`]).
    fn new(treat: &[bool], weights: Option<&[f64]>, options: &BalanceOptions<'_>) -> Result<Weighting, BalanceError> {
        let n = treat.len();
        let len = |what, found| {
            if found == n { Ok(()) } else { Err(BalanceError::LengthMismatch { what, expected: n, found }) }
        };
        let check = |w: &[f64], sampling: bool| match w.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            Some((row, &value)) => Err(BalanceError::InvalidWeight { sampling, row, value }),
            None => Ok(()),
        };
        if let Some(w) = weights {
            len("weights", w.len())?;
            check(w, false)?;
        }
        if let Some(w) = options.sampling_weights {
            len("sampling weights", w.len())?;
            check(w, true)?;
        }
        if let Some(d) = options.discarded {
            len("discarded", d.len())?;
        }
        let sw: Vec<f64> = options.sampling_weights.map_or_else(|| vec![1.0; n], <[f64]>::to_vec);
        let ww: Vec<f64> = match weights {
            Some(w) => w.iter().zip(&sw).map(|(a, b)| a * b).collect(),
            None => sw.clone(),
        };
        Ok(Weighting { ww, sw, denom: options.sd_denominator, weighted: weights.is_some() })
    }

    /// Each group has a unit with positive weight.
    fn check_groups(&self, treat: &[bool]) -> Result<(), BalanceError> {
        for g in [true, false] {
            if !treat.iter().zip(&self.ww).any(|(&t, &w)| t == g && w > 0.0) {
                return Err(BalanceError::EmptyGroup { treated: g });
            }
        }
        Ok(())
    }

    /// The table of `rows` with the groups' sizes.
    fn table(&self, rows: Vec<BalanceRow>, treat: &[bool], options: &BalanceOptions<'_>) -> BalanceTable {
        let (ww, sw) = (&self.ww, &self.sw);
        let group = |g: bool| {
            let idx = || (0..treat.len()).filter(move |&i| treat[i] == g);
            let disc = |i: usize| options.discarded.is_some_and(|d| d[i]);
            GroupSizes {
                all_ess: ess(idx().map(|i| sw[i])),
                all: idx().count(),
                matched_ess: ess(idx().map(|i| ww[i])),
                matched: idx().filter(|&i| ww[i] > 0.0).count(),
                unmatched: idx().filter(|&i| ww[i] == 0.0 && !disc(i)).count(),
                discarded: idx().filter(|&i| disc(i)).count(),
            }
        };
        BalanceTable {
            rows,
            sd_denominator: self.denom,
            weighted: self.weighted,
            n: SampleSizes { control: group(false), treated: group(true) },
        }
    }
}

/// Effective sample size `(Σw)²/Σw²`.
pub fn ess(w: impl Iterator<Item = f64>) -> f64 {
    let (s, s2) = w.fold(((0.0, 0.0), (0.0, 0.0)), |(a, b), v| (add(a, v), add(b, v * v)));
    let (s, s2) = (s.0 + s.1, s2.0 + s2.1);
    if s2 > 0.0 { s * s / s2 } else { 0.0 }
}

/// Neumaier compensated addition (R accumulates sums in long double).
fn add((s, c): (f64, f64), v: f64) -> (f64, f64) {
    let t = s + v;
    let c = if s.abs() >= v.abs() { c + ((s - t) + v) } else { c + ((v - t) + s) };
    (t, c)
}

fn ksum(it: impl Iterator<Item = f64>) -> f64 {
    let (s, c) = it.fold((0.0, 0.0), add);
    s + c
}

/// Weighted mean over the units `idx`.
fn wm(x: &[f64], w: &[f64], idx: &[usize]) -> f64 {
    ksum(idx.iter().map(|&i| x[i] * w[i])) / ksum(idx.iter().map(|&i| w[i]))
}

/// MatchIt's `wvar`: `p(1 − p)` for binary variables, otherwise the reliability-weighted variance.
fn wvar(x: &[f64], w: &[f64], idx: &[usize], binary: bool) -> f64 {
    let sw = ksum(idx.iter().map(|&i| w[i]));
    let mx = ksum(idx.iter().map(|&i| w[i] / sw * x[i]));
    if binary {
        return mx * (1.0 - mx);
    }
    let num = ksum(idx.iter().map(|&i| w[i] / sw * (x[i] - mx).powi(2)));
    let den = 1.0 - ksum(idx.iter().map(|&i| (w[i] / sw).powi(2)));
    num / den
}

/// MatchIt's `pooled_sd(contribution = "proportional")` with weights (the divide-by-zero fallback).
fn pooled_sd_proportional(x: &[f64], treat: &[bool], w: &[f64], binary: bool) -> f64 {
    let groups: [Vec<usize>; 2] = [true, false].map(|g| (0..x.len()).filter(|&i| treat[i] == g).collect());
    let total = ksum(w.iter().copied());
    let var = if binary {
        ksum(groups.iter().map(|idx| {
            let sx = ksum(idx.iter().map(|&i| x[i] * w[i]));
            let ni = ksum(idx.iter().map(|&i| w[i]));
            sx * (1.0 - sx / ni) / total
        }))
    } else {
        let mut c = x.to_vec();
        for idx in &groups {
            let m = wm(x, w, idx);
            for &i in idx {
                c[i] = x[i] - m;
            }
        }
        let num = ksum((0..x.len()).map(|i| w[i] / total * c[i] * c[i]));
        let den = 1.0 - ksum(w.iter().map(|v| (v / total).powi(2)));
        num / den
    };
    var.sqrt()
}

/// Whether every value is 0 or 1.
fn is_binary(x: &[f64]) -> bool {
    x.iter().all(|&v| v == 0.0 || v == 1.0)
}

/// One covariate's row; `ord` is `x`'s [`order`] when already known.
fn bal1var(term: &str, x: &[f64], treat: &[bool], w: &Weighting, ord: Option<&[usize]>) -> BalanceRow {
    let (ww, sw, denom) = (&w.ww[..], &w.sw[..], w.denom);
    let binary = is_binary(x);
    let i1: Vec<usize> = (0..x.len()).filter(|&i| treat[i]).collect();
    let i0: Vec<usize> = (0..x.len()).filter(|&i| !treat[i]).collect();
    let nonzero = |idx: &[usize]| idx.iter().filter(|&&i| ww[i] != 0.0).count();
    let too_small = nonzero(&i1) < 2 && nonzero(&i0) < 2;
    let mean_treated = wm(x, ww, &i1);
    let mean_control = wm(x, ww, &i0);
    let mdiff = mean_treated - mean_control;
    let smd = if mdiff.abs() > SQRT_EPS {
        if too_small {
            None
        } else {
            let mut std = match denom {
                SdDenominator::Treated => wvar(x, sw, &i1, binary).sqrt(),
                SdDenominator::Control => wvar(x, sw, &i0, binary).sqrt(),
                SdDenominator::Pooled => ((wvar(x, sw, &i1, binary) + wvar(x, sw, &i0, binary)) / 2.0).sqrt(),
            };
            if !std.is_finite() || std < SQRT_EPS {
                std = pooled_sd_proportional(x, treat, sw, binary);
            }
            Some(mdiff / std).filter(|v| v.is_finite())
        }
    } else {
        Some(mdiff)
    };
    let (var_ratio, ecdf_mean, ecdf_max) = if binary {
        (None, mdiff.abs(), mdiff.abs())
    } else if too_small {
        (None, f64::NAN, f64::NAN)
    } else {
        let vr = wvar(x, ww, &i1, false) / wvar(x, ww, &i0, false);
        let (m, mx) = match ord {
            Some(ord) => ecdf_diff(x, treat, ww, ord),
            None => ecdf_diff(x, treat, ww, &order(x)),
        };
        (Some(vr).filter(|v| v.is_finite()), m, mx)
    };
    BalanceRow { term: term.to_string(), mean_treated, mean_control, smd, var_ratio, ecdf_mean, ecdf_max, binary }
}

/// R's `order(x)` for finite values: ascending, ties in their original order.
fn order(x: &[f64]) -> Vec<usize> {
    // Sorting (value, row) pairs by both keeps the values next to each other in memory (an index sort would
    // fetch `x` at random for every comparison) and gives the same permutation as a stable sort by value;
    // `+ 0.0` makes −0 and 0 one value, as they compare equal.
    let mut keyed: Vec<(f64, usize)> = x.iter().map(|&v| v + 0.0).zip(0..).collect();
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// MatchIt's `qqsum(standardize = TRUE)`: mean and max of |F₁ − F₀| over the distinct values of `x`, given
/// `ord = order(x)`.
fn ecdf_diff(x: &[f64], treat: &[bool], w: &[f64], ord: &[usize]) -> (f64, f64) {
    let tot = |g: bool| ksum((0..x.len()).filter(|&i| treat[i] == g).map(|i| w[i]));
    let (t1, t0) = (tot(true), tot(false));
    let first = treat[ord[0]];
    let mut acc = (0.0, 0.0);
    let (mut sum, mut count, mut max) = ((0.0, 0.0), 0usize, 0.0_f64);
    for (pos, &i) in ord.iter().enumerate() {
        let v = if treat[i] { w[i] / t1 } else { w[i] / t0 };
        acc = add(acc, if treat[i] == first { -v } else { v });
        let last_of_run = pos + 1 == ord.len() || x[ord[pos + 1]] - x[i] != 0.0;
        if last_of_run {
            let d = (acc.0 + acc.1).abs();
            sum = add(sum, d);
            count += 1;
            max = max.max(d);
        }
    }
    ((sum.0 + sum.1) / count as f64, max)
}

#[cfg(test)]
mod tests {
    use super::order;

    /// `order` is R's `order()`: a stable sort by value, in which −0 and 0 are one value.
    #[test]
    fn order_is_a_stable_sort_by_value() {
        let x: Vec<f64> = (0..500)
            .map(|i: usize| match i % 6 {
                0 => -0.0,
                1 => 0.0,
                _ => ((i * 37) % 11) as f64 - 5.0,
            })
            .collect();
        let mut stable: Vec<usize> = (0..x.len()).collect();
        stable.sort_by(|&a, &b| x[a].partial_cmp(&x[b]).unwrap());
        assert_eq!(order(&x), stable);
    }
}
