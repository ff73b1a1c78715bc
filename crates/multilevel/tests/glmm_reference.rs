//! Reference-value tests of the binomial GLMM against lme4's `glmer`. Data and expected values were written by
//! `tests/reference/glmer_reference.R` (run from `crates/multilevel`); CI needs no R.
//!
//! Tolerances (relative unless stated): glmer log-likelihood, deviance, AIC, BIC 1e-6; fixed effects 1e-5
//! (absolute, scaled by max(1, |β|)); θ and variance components 1e-4; conditional modes and SDs 1e-4 (absolute);
//! standard errors from the finite-difference Hessian 1e-3 and from R_X 1e-4 (the Hessian is a finite
//! difference with step 1e-4 on both sides, so it agrees only to about that).

use std::collections::HashMap;

use psmeval_frame::{binomial_counts, build_model_frame, parse_formula};
use psmeval_multilevel::{
    Cr2, Family, GlmmFit, GlmmOptions, MixedModel, MixedModelError, OptMethod, OptParameters, fit_glmm,
};
use serde_json::Value;

mod common;
use common::{nums, read_table};

fn reference(key: &str) -> Value {
    let path = format!("{}/tests/reference/glmer_reference.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[key].clone()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol * want.abs().max(1.0), "{what}: got {got:.12}, glmer {want:.12}, tol {tol}");
}

fn fit(data: &str, formula: &str, nagq: usize, use_hessian: bool) -> GlmmFit {
    let table = read_table(data);
    let f = parse_formula(formula).unwrap();
    let frame = build_model_frame(&f, &table).unwrap();
    let weights = formula.starts_with("cbind").then(|| binomial_counts(&f, &table, &frame.rows).unwrap().1);
    fit_glmm(&frame, &GlmmOptions { nagq, weights, use_hessian }).unwrap()
}

fn check(fit: &GlmmFit, r: &Value, se_key: &str, se_tol: f64, ll_tol: f64) {
    // Parameters: 1e-5 where the objectives coincide (AGQ), 1e-3 where glmer's stale-weight Laplace moves its optimum (cbpp: β 4e-4).
    let par_tol = if ll_tol > 1e-6 { 1e-3 } else { 1e-5 };
    assert!(fit.converged(), "{:?} {:?}", fit.diagnostics, fit.optimizer());
    close("logLik", fit.glmer_log_likelihood, r["logLik"].as_f64().unwrap(), ll_tol);
    close("criterion", fit.criterion, r["devfun_value"].as_f64().unwrap(), ll_tol);
    close("deviance", fit.deviance, r["deviance"].as_f64().unwrap(), par_tol);
    let names: Vec<String> = r["beta_names"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
    let beta = nums(&r["beta"]);
    let se = nums(&r[se_key]);
    for (k, name) in names.iter().enumerate() {
        let fe = fit.fixed_effects().iter().find(|f| &f.term == name).unwrap_or_else(|| panic!("no term {name}"));
        close(&format!("beta {name}"), fe.estimate, beta[k], par_tol);
        close(&format!("se {name}"), fe.std_error, se[k], se_tol * se[k].abs());
    }
    close("theta", fit.theta()[0], nums(&r["theta"])[0], par_tol.max(1e-4));
    close("variance", fit.variance_components()[0].variance, nums(&r["variance"])[0], par_tol.max(1e-4));
    let levels: Vec<&str> = r["ranef_levels"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let (re, sd) = (nums(&r["ranef"]), nums(&r["ranef_sd"]));
    let ranef = &fit.ranef()[0];
    let by_level: HashMap<&str, usize> = ranef.levels.iter().enumerate().map(|(j, l)| (l.as_str(), j)).collect();
    for (k, lev) in levels.iter().enumerate() {
        let j = by_level[lev];
        close(&format!("ranef {lev}"), ranef.modes[j][0], re[k], par_tol.max(1e-4));
        close(&format!("condsd {lev}"), ranef.cond_sd[j][0], sd[k], par_tol.max(1e-4));
    }
}

/// glmer evaluates log|L|² with the weights of the penultimate PIRLS iterate (its loop refactors before the
/// last step and stops on a relative change of 1e-7), we at the converged mode (the exact Laplace formula).
/// At the same (θ, β) the conditional modes agree to 1e-8 but glmer's cbpp objective is 5.8e-4 higher
/// (ldL2 16.901589 vs 16.901011); hence 5e-6 relative on Laplace log-likelihoods instead of 1e-6.
const LAPLACE_LL_TOL: f64 = 5e-6;

const CBPP: &str = "cbind(incidence, failures) ~ period + (1 | herd)";

#[test]
fn cbpp_laplace_matches_glmer() {
    let r = reference("cbpp_laplace");
    let f = fit("cbpp", CBPP, 1, true);
    // glmer differentiates its stale-weight objective (whose PIRLS stopping point moves with the 1e-4 steps),
    // so its Hessian SEs for cbpp differ from ours by up to 1.2% (period2 0.306642 vs 0.303151); schools agree to 1e-3.
    check(&f, &r, "se_hessian", 2e-2, LAPLACE_LL_TOL);
    close("AIC", f.aic(), r["AIC"].as_f64().unwrap(), LAPLACE_LL_TOL);
    close("BIC", f.bic(), r["BIC"].as_f64().unwrap(), LAPLACE_LL_TOL);
    close("loglik scale", f.log_likelihood(), f.glmer_log_likelihood, 1e-12);
    let f_rx = fit("cbpp", CBPP, 1, false);
    // R_X SEs move with the 4e-4 shift of the optimum: 1.7e-4 measured.
    check(&f_rx, &r, "se_rx", 1e-3, LAPLACE_LL_TOL);
}

#[test]
fn cbpp_agq10_matches_glmer() {
    let r = reference("cbpp_agq10");
    let f = fit("cbpp", CBPP, 10, true);
    check(&f, &r, "se_hessian", 1e-3, 1e-6);
    // glmer's nAGQ > 1 logLik drops the constant C of the binomial coefficients and saturated model.
    let laplace = reference("cbpp_laplace");
    let c = laplace["devfun_value"].as_f64().unwrap()
        - (laplace["sum_dev_resid"].as_f64().unwrap()
            + laplace["sum_u2"].as_f64().unwrap()
            + laplace["ldL2"].as_f64().unwrap());
    close("full logLik", f.log_likelihood(), r["logLik"].as_f64().unwrap() - c / 2.0, 1e-6);
}

#[test]
fn schools_laplace_matches_glmer() {
    let r = reference("schools_laplace");
    let f = fit("glmm_schools", "y ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school)", 1, true);
    check(&f, &r, "se_hessian", 1e-3, LAPLACE_LL_TOL);
    close("AIC", f.aic(), r["AIC"].as_f64().unwrap(), LAPLACE_LL_TOL);
    close("BIC", f.bic(), r["BIC"].as_f64().unwrap(), LAPLACE_LL_TOL);
}

/// The shared contract on a logistic fit: Wald z rows and contrasts, the latent-scale ICC, the optimizer's
/// record of both stages (BOBYQA in θ, then Newton steps in (θ, β)).
#[test]
fn glmm_contract() {
    let f = fit("glmm_schools", "y ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school)", 1, true);
    assert_eq!(f.family(), Family::Binomial);
    let p = f.beta().len();
    assert_eq!(f.vcov().len(), p * p);
    for (j, fe) in f.fixed_effects().iter().enumerate() {
        assert_eq!(fe.df, None);
        let mut unit = vec![0.0; p];
        unit[j] = 1.0;
        let t = f.contrast(&unit).unwrap();
        assert_eq!((t.estimate, t.std_error, t.statistic, t.df), (fe.estimate, fe.std_error, fe.statistic, None));
        assert!((t.p_value - fe.p_value).abs() < 1e-15);
        assert_eq!(fe.odds_ratio(), fe.estimate.exp());
    }
    let tau2 = f.variance_components()[0].variance;
    let icc = f.icc().expect("random intercept");
    assert!((icc - tau2 / (tau2 + std::f64::consts::PI.powi(2) / 3.0)).abs() < 1e-15);
    assert_eq!(f.variance_components()[0].term.as_deref(), Some("(Intercept)"));
    let opt = f.optimizer();
    assert_eq!(opt.theta_final, f.theta());
    assert_eq!(opt.objective, f.criterion);
    assert_eq!(opt.evaluations, opt.runs.iter().map(|r| r.evaluations).sum::<usize>());
    // Stage 1 by BOBYQA in θ, stage 2 by Newton steps in (θ, β), converged.
    assert_eq!(opt.optimizer, "BOBYQA, then Newton");
    assert_eq!(opt.runs.len(), 2, "{opt:?}");
    assert!(matches!(opt.runs[0].method, OptMethod::Bobyqa { .. }) && opt.runs[0].parameters == OptParameters::Theta);
    assert_eq!((opt.runs[1].method, opt.runs[1].parameters), (OptMethod::Newton, OptParameters::ThetaBeta));
    assert!(opt.runs[1].converged && opt.runs[1].objective == f.criterion, "{opt:?}");
    assert!(matches!(f.contrast(&[1.0]), Err(MixedModelError::DimensionMismatch { .. })));
}

/// The conditional linear predictor Xβ̂ + Zb̂ reproduces the fit's deviance (glmer's: squared deviance
/// residuals at the conditional modes, checked against glmer above), and the working-model CR2 of the logistic
/// fit gives each coefficient an SE of the model's order with small-sample df below the number of schools.
#[test]
fn linear_predictor_and_working_model_cr2() {
    let table = read_table("glmm_schools");
    let formula = "y ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school)";
    let frame = build_model_frame(&parse_formula(formula).unwrap(), &table).unwrap();
    let f = fit_glmm(&frame, &GlmmOptions::default()).unwrap();
    let eta = f.linear_predictor(&frame).unwrap();
    let deviance: f64 = frame
        .y
        .iter()
        .zip(&eta)
        .map(|(&y, &e)| {
            let mu = 1.0 / (1.0 + (-e).exp());
            -2.0 * (y * mu.ln() + (1.0 - y) * (1.0 - mu).ln())
        })
        .sum();
    close("deviance from the linear predictor", deviance, f.deviance, 1e-9);
    close("deviance vs glmer", deviance, reference("schools_laplace")["deviance"].as_f64().unwrap(), 1e-5);
    let clusters: Vec<u32> = frame.random[0].codes.clone();
    let schools = frame.random[0].levels.len() as f64;
    let cr2 = Cr2::logistic(&frame, &f, None, &clusters).unwrap();
    for (j, fe) in f.fixed_effects().iter().enumerate() {
        let mut unit = vec![0.0; f.beta().len()];
        unit[j] = 1.0;
        let t = cr2.contrast(&unit).unwrap();
        assert_eq!(t.estimate, fe.estimate);
        let ratio = t.std_error / fe.std_error;
        assert!((0.5..2.0).contains(&ratio), "{}: CR2 SE {} vs model {}", fe.term, t.std_error, fe.std_error);
        let df = t.df.unwrap();
        assert!(df > 1.0 && df < schools, "{}: df {df} with {schools} schools", fe.term);
    }
    assert!(Cr2::logistic(&frame, &f, Some(&[1.0]), &clusters).is_err());
}

#[test]
fn bad_responses_are_typed_errors() {
    let table = read_table("glmm_schools");
    let f = parse_formula("prior ~ fsm + (1 | school)").unwrap();
    let frame = build_model_frame(&f, &table).unwrap();
    assert!(matches!(
        fit_glmm(&frame, &GlmmOptions::default()),
        Err(MixedModelError::ResponseNotBinary { row: 1, .. })
    ));
    let f = parse_formula("fsm ~ female + (1 | school)").unwrap();
    let mut frame = build_model_frame(&f, &table).unwrap();
    frame.y.iter_mut().for_each(|y| *y = 0.0);
    assert!(matches!(fit_glmm(&frame, &GlmmOptions::default()), Err(MixedModelError::CompleteSeparation { .. })));
    let n = frame.y.len();
    let opts = GlmmOptions { weights: Some(vec![0.0; n]), ..GlmmOptions::default() };
    assert!(matches!(fit_glmm(&frame, &opts), Err(MixedModelError::NonPositiveWeight { row: 1, .. })));
    let opts = GlmmOptions { weights: Some(vec![1.0; n - 1]), ..GlmmOptions::default() };
    assert!(matches!(fit_glmm(&frame, &opts), Err(MixedModelError::DimensionMismatch { .. })));
    // Rows are 1-based in every error, as for the linear model.
    let f = parse_formula("fsm ~ female + (1 | school)").unwrap();
    let mut frame = build_model_frame(&f, &table).unwrap();
    frame.x[[2, 1]] = f64::NAN;
    assert_eq!(
        fit_glmm(&frame, &GlmmOptions::default()),
        Err(MixedModelError::NonFinite { what: "female".into(), row: 3 })
    );
    frame.x[[2, 1]] = 0.0;
    frame.y[3] = 0.5;
    assert_eq!(
        fit_glmm(&frame, &GlmmOptions::default()),
        Err(MixedModelError::ResponseNotBinary { row: 4, value: 0.5 })
    );
    frame.random.clear();
    assert_eq!(fit_glmm(&frame, &GlmmOptions::default()), Err(MixedModelError::NoRandomTerms));
}

/// Separation by a covariate is not an error (glmer fits it too) but a named diagnostic, as glm's warning
/// "fitted probabilities numerically 0 or 1 occurred"; the reference fits have none.
#[test]
fn separation_by_a_covariate_is_diagnosed() {
    let table = read_table("glmm_schools");
    let f = parse_formula("fsm ~ female + (1 | school)").unwrap();
    let mut frame = build_model_frame(&f, &table).unwrap();
    let clean = fit_glmm(&frame, &GlmmOptions::default()).unwrap();
    assert_eq!(clean.diagnostics.fitted_probabilities_0_or_1, 0);
    // The response equals the covariate: complete separation by `female`.
    frame.y = frame.x.column(1).to_vec();
    let fit = fit_glmm(&frame, &GlmmOptions { use_hessian: false, ..GlmmOptions::default() }).unwrap();
    assert!(fit.diagnostics.fitted_probabilities_0_or_1 > 0, "{:?}", fit.diagnostics);
}

/// A response with less variation between schools than chance gives (every third pupil of each school is 1):
/// the optimum is on the boundary θ = 0, where the model is a plain logistic regression. The Newton second
/// stage reaches it (the objective is even in θ) and the fit equals the logistic regression computed here by
/// Fisher scoring.
#[test]
fn a_zero_school_variance_gives_the_logistic_regression() {
    let table = read_table("glmm_schools");
    let formula = "fsm ~ female + prior + (1 | school)";
    let mut frame = build_model_frame(&parse_formula(formula).unwrap(), &table).unwrap();
    frame.y.iter_mut().enumerate().for_each(|(i, y)| *y = if i % 3 == 0 { 1.0 } else { 0.0 });
    let f = fit_glmm(&frame, &GlmmOptions::default()).unwrap();
    let (n, p) = frame.x.dim();
    let mut beta = vec![0.0; p];
    for _ in 0..50 {
        let mut info = vec![0.0; p * p];
        let mut score = vec![0.0; p];
        for i in 0..n {
            let eta: f64 = (0..p).map(|k| frame.x[[i, k]] * beta[k]).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            for a in 0..p {
                score[a] += frame.x[[i, a]] * (frame.y[i] - mu);
                for b in 0..p {
                    info[a * p + b] += mu * (1.0 - mu) * frame.x[[i, a]] * frame.x[[i, b]];
                }
            }
        }
        // Gaussian elimination on the p × p information matrix.
        for c in 0..p {
            for r in c + 1..p {
                let m = info[r * p + c] / info[c * p + c];
                for k in c..p {
                    info[r * p + k] -= m * info[c * p + k];
                }
                score[r] -= m * score[c];
            }
        }
        for c in (0..p).rev() {
            let s: f64 = (c + 1..p).map(|k| info[c * p + k] * score[k]).sum();
            score[c] = (score[c] - s) / info[c * p + c];
        }
        beta.iter_mut().zip(&score).for_each(|(b, d)| *b += d);
    }
    assert!(f.singular() && f.converged(), "{:?}", f.optimizer());
    for (fe, b) in f.fixed_effects().iter().zip(&beta) {
        close(&format!("beta {}", fe.term), fe.estimate, *b, 1e-6);
    }
}
