//! The `glm.fit` loop: start values, iteratively reweighted least squares with step halving, the stopping
//! rule, then deviance, null deviance, AIC, standard errors and R's warnings (see the module documentation
//! of [`crate::propensity`]).

use ndarray::ArrayView2;
use rayon::prelude::*;
use statrs::distribution::ContinuousCDF;
use statrs::function::gamma::ln_gamma;

use super::link::standard_normal;
use super::qr::{Step, aliased_error, wls_step};
use super::{BLOCK, Coefficient, GlmControl, Link, PropensityError, PropensityFit, PropensityWarning};

/// Fits `glm(y ~ X - 1, family = binomial(link), weights)` with R's default control (see the module doc).
///
/// `x` is the design matrix (n × p, including the intercept column if any, named `(Intercept)` or all
/// ones), `names` its column names, `y` the 0/1 treatment indicator, `weights` optional prior weights.
pub fn fit_binomial_glm(
    x: ArrayView2<f64>,
    names: &[String],
    y: &[f64],
    weights: Option<&[f64]>,
    link: Link,
) -> Result<PropensityFit, PropensityError> {
    fit_binomial_glm_with(x, names, y, weights, link, &GlmControl::default())
}

/// [`fit_binomial_glm`] with an explicit `glm.control`.
pub fn fit_binomial_glm_with(
    x: ArrayView2<f64>,
    names: &[String],
    y: &[f64],
    weights: Option<&[f64]>,
    link: Link,
    control: &GlmControl,
) -> Result<PropensityFit, PropensityError> {
    let (n, p) = x.dim();
    validate(x, names, y, weights)?;
    // glm.control rejects maxit < 1; treat 0 as 1 rather than fail.
    let maxit = control.maxit.max(1);
    let w: Vec<f64> = weights.map_or_else(|| vec![1.0; n], <[f64]>::to_vec);
    // binomial()$initialize: y[weights == 0] <- 0; mustart <- (weights * y + 0.5)/(weights + 1).
    let y: Vec<f64> = y.iter().zip(&w).map(|(&yi, &wi)| if wi == 0.0 { 0.0 } else { yi }).collect();
    let mut warnings = Vec::new();
    if y.iter().zip(&w).any(|(&yi, &wi)| ((wi * yi) - (wi * yi).round_ties_even()).abs() > 0.001) {
        warnings.push(PropensityWarning::NonIntegerSuccesses);
    }
    let n_ok = w.iter().filter(|&&wi| wi > 0.0).count();
    let n_treated = y.iter().zip(&w).filter(|(yi, wi)| **wi > 0.0 && **yi == 1.0).count();
    if n_treated == 0 || n_treated == n_ok {
        return Err(PropensityError::NoVariation { all_treated: n_treated > 0, n: n_ok });
    }
    if n_ok < p {
        return Err(PropensityError::TooFewObservations { n: n_ok, p });
    }

    let mut eta: Vec<f64> = y.iter().zip(&w).map(|(&yi, &wi)| link.linkfun((wi * yi + 0.5) / (wi + 1.0))).collect();
    let mut mu: Vec<f64> = eta.iter().map(|&e| link.linkinv(e)).collect();
    let mut devold = deviance(&y, &mu, &w);
    let mut coefold: Option<Vec<f64>> = None;
    let mut start = vec![0.0; p];
    let mut conv = false;
    let mut boundary = false;
    let mut iter = 0;
    let mut last: Option<Step> = None;
    let tol = 1e-7_f64.min(control.epsilon / 1000.0);
    for it in 1..=maxit {
        iter = it;
        let step = wls_step(x, &y, &w, &eta, &mu, link, tol, it)?;
        if step.rank < p {
            return Err(aliased_error(x, names, &w, &step));
        }
        if step.coef.iter().any(|c| !c.is_finite()) {
            return Err(PropensityError::NumericalFailure { iteration: it, reason: "non-finite coefficients" });
        }
        start.clone_from(&step.coef);
        last = Some(step);
        update(x, &start, link, &mut eta, &mut mu);
        let mut dev = deviance(&y, &mu, &w);
        boundary = false;
        if !dev.is_finite() || !valid_mu(&mu) {
            let Some(old) = coefold.as_ref() else {
                return Err(PropensityError::NumericalFailure {
                    iteration: it,
                    reason: "no valid set of coefficients has been found: please supply starting values",
                });
            };
            warnings.push(PropensityWarning::StepHalved { iteration: it });
            let mut ii = 1;
            while !dev.is_finite() || !valid_mu(&mu) {
                if ii > maxit {
                    return Err(PropensityError::NumericalFailure {
                        iteration: it,
                        reason: "inner loop; cannot correct step size",
                    });
                }
                ii += 1;
                for (s, o) in start.iter_mut().zip(old) {
                    *s = (*s + o) / 2.0;
                }
                update(x, &start, link, &mut eta, &mut mu);
                dev = deviance(&y, &mu, &w);
            }
            boundary = true;
        }
        if (dev - devold).abs() / (dev.abs() + 0.1) < control.epsilon {
            conv = true;
            devold = dev;
            break;
        }
        devold = dev;
        coefold = Some(start.clone());
    }
    let dev = devold;
    let step = last.expect("maxit >= 1");
    if !conv {
        warnings.push(PropensityWarning::NotConverged { iterations: iter });
    }
    if boundary {
        warnings.push(PropensityWarning::Boundary);
    }
    let eps10 = 10.0 * f64::EPSILON;
    let extreme = mu.iter().filter(|&&m| m > 1.0 - eps10 || m < eps10).count();
    if extreme > 0 {
        warnings.push(PropensityWarning::FittedProbabilitiesZeroOrOne { count: extreme });
    }

    // Null deviance: intercept-only fit, i.e. the weighted mean (glm.fit's wtdmu).
    let intercept = has_intercept(x, names);
    let wtdmu = if intercept {
        sum_f(y.iter().zip(&w).map(|(a, b)| a * b)) / sum_f(w.iter().copied())
    } else {
        link.linkinv(0.0)
    };
    let null_deviance = sum_f(y.iter().zip(&w).map(|(&yi, &wi)| dev_resid(yi, wtdmu, wi)));
    let aic =
        -2.0 * sum_f(
            y.iter()
                .zip(&w)
                .zip(&mu)
                .filter(|((_, wi), _)| **wi > 0.0)
                .map(|((&yi, &wi), &m)| dbinom_log((wi * yi).round_ties_even(), wi.round_ties_even(), m)),
        ) + 2.0 * p as f64;

    let se = step.std_errors();
    let normal = standard_normal();
    let coefficients = (0..p)
        .map(|j| {
            let z = start[j] / se[j];
            Coefficient {
                term: names[j].clone(),
                estimate: start[j],
                std_error: se[j],
                z_value: z,
                p_value: 2.0 * normal.cdf(-z.abs()),
            }
        })
        .collect();
    Ok(PropensityFit {
        link,
        terms: names.to_vec(),
        coefficients,
        fitted: mu,
        linear_predictor: eta,
        deviance: dev,
        null_deviance,
        aic,
        df_residual: n_ok - p,
        df_null: n_ok - usize::from(intercept),
        iterations: iter,
        converged: conv,
        warnings,
    })
}

fn validate(x: ArrayView2<f64>, names: &[String], y: &[f64], weights: Option<&[f64]>) -> Result<(), PropensityError> {
    let (n, p) = x.dim();
    if n == 0 {
        return Err(PropensityError::NoRows);
    }
    if p == 0 {
        return Err(PropensityError::NoColumns);
    }
    if names.len() != p {
        return Err(PropensityError::LengthMismatch { what: "names", expected: p, found: names.len() });
    }
    if y.len() != n {
        return Err(PropensityError::LengthMismatch { what: "the response", expected: n, found: y.len() });
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(PropensityError::LengthMismatch { what: "weights", expected: n, found: w.len() });
        }
        if let Some((row, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            return Err(PropensityError::InvalidWeight { row, value });
        }
    }
    if let Some((row, &value)) = y.iter().enumerate().find(|(_, v)| **v != 0.0 && **v != 1.0) {
        return Err(PropensityError::ResponseNotBinary { row, value });
    }
    for (row, r) in x.outer_iter().enumerate() {
        if let Some((j, &value)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(PropensityError::NonFiniteCovariate { term: names[j].clone(), row, value });
        }
    }
    Ok(())
}

fn has_intercept(x: ArrayView2<f64>, names: &[String]) -> bool {
    names.iter().any(|s| s == "(Intercept)") || x.columns().into_iter().any(|c| c.iter().all(|&v| v == 1.0))
}

fn valid_mu(mu: &[f64]) -> bool {
    mu.iter().all(|&m| m.is_finite() && m > 0.0 && m < 1.0)
}

/// `eta = X·b`, `mu = linkinv(eta)`.
fn update(x: ArrayView2<f64>, b: &[f64], link: Link, eta: &mut [f64], mu: &mut [f64]) {
    eta.par_chunks_mut(BLOCK).zip(mu.par_chunks_mut(BLOCK)).enumerate().for_each(|(c, (e, m))| {
        for (k, (ei, mi)) in e.iter_mut().zip(m.iter_mut()).enumerate() {
            let row = x.row(c * BLOCK + k);
            let mut s = 0.0;
            for (xv, bv) in row.iter().zip(b) {
                s += xv * bv;
            }
            *ei = s;
            *mi = link.linkinv(s);
        }
    });
}

fn y_log_y(y: f64, mu: f64) -> f64 {
    if y != 0.0 { y * (y / mu).ln() } else { 0.0 }
}

/// R's `binomial_dev_resids` for one unit.
fn dev_resid(y: f64, mu: f64, w: f64) -> f64 {
    2.0 * w * (y_log_y(y, mu) + y_log_y(1.0 - y, 1.0 - mu))
}

fn deviance(y: &[f64], mu: &[f64], w: &[f64]) -> f64 {
    let parts: Vec<(f64, f64)> = y
        .par_chunks(BLOCK)
        .zip(mu.par_chunks(BLOCK))
        .zip(w.par_chunks(BLOCK))
        .map(|((y, m), w)| neumaier(y.iter().zip(m).zip(w).map(|((&yi, &mi), &wi)| dev_resid(yi, mi, wi))))
        .collect();
    let mut acc = (0.0, 0.0);
    for (s, c) in parts {
        acc = neumaier_add(neumaier_add(acc, s), c);
    }
    acc.0 + acc.1
}

fn neumaier(it: impl Iterator<Item = f64>) -> (f64, f64) {
    it.fold((0.0, 0.0), neumaier_add)
}

fn neumaier_add((s, c): (f64, f64), v: f64) -> (f64, f64) {
    let t = s + v;
    let c = if s.abs() >= v.abs() { c + ((s - t) + v) } else { c + ((v - t) + s) };
    (t, c)
}

/// Compensated sum (R sums in long double).
fn sum_f(it: impl Iterator<Item = f64>) -> f64 {
    let (s, c) = neumaier(it);
    s + c
}

/// `dbinom(k, size, prob, log = TRUE)`.
fn dbinom_log(k: f64, size: f64, prob: f64) -> f64 {
    if size == 0.0 {
        return if k == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let lchoose = if size == 1.0 { 0.0 } else { ln_gamma(size + 1.0) - ln_gamma(k + 1.0) - ln_gamma(size - k + 1.0) };
    let a = if k > 0.0 { k * prob.ln() } else { 0.0 };
    let b = if size - k > 0.0 { (size - k) * (1.0 - prob).ln() } else { 0.0 };
    lchoose + a + b
}
