//! The binomial GLM against R's `glm` on MatchIt's lalonde data (values from
//! tests/reference/propensity_balance.R, R 4.2.2).
//!
//! Tolerances: coefficients, standard errors, z values 1e-6 relative; p-values 1e-6 relative (plus 1e-300
//! absolute); fitted scores and linear predictors 1e-8 absolute; deviance, null deviance and AIC 1e-8
//! relative; iteration counts, convergence and R's warnings exactly.

mod lalonde_data;

use lalonde_data::{Lalonde, indicator, load, matrix, nums, reference, strings};
use ndarray::Array2;
use psmeval_matching::propensity::{
    GlmControl, Link, PropensityError, PropensityFit, PropensityWarning, fit_binomial_glm_with,
};
use serde_json::Value;

fn column(d: &Lalonde, name: &str) -> Vec<f64> {
    let n = d.treat.len();
    match name {
        "(Intercept)" => vec![1.0; n],
        "age" => d.age.clone(),
        "educ" => d.educ.clone(),
        "married" => d.married.clone(),
        "nodegree" => d.nodegree.clone(),
        "re74" => d.re74.clone(),
        "re75" => d.re75.clone(),
        "racehispan" => indicator(&d.race, "hispan"),
        "racewhite" => indicator(&d.race, "white"),
        "age:married" => (0..n).map(|i| d.age[i] * d.married[i]).collect(),
        "sep" => (0..n).map(|i| f64::from(u8::from(d.treat[i] == 1.0 && d.re75[i] > 6000.0))).collect(),
        "sep2" => {
            (0..n).map(|i| if d.treat[i] == 1.0 { 1.0 + d.educ[i] / 10.0 } else { -1.0 - d.educ[i] / 10.0 }).collect()
        }
        "re74x2" => (0..n).map(|i| d.re74[i] * 2.0 + d.re75[i]).collect(),
        other => panic!("unknown term {other}"),
    }
}

fn design(d: &Lalonde, terms: &[String]) -> (Array2<f64>, Vec<String>) {
    let cols: Vec<(&str, Vec<f64>)> = terms.iter().map(|t| (t.as_str(), column(d, t))).collect();
    matrix(&cols)
}

fn fit_case(d: &Lalonde, case: &Value) -> Result<PropensityFit, PropensityError> {
    let terms = strings(&case["terms"]);
    let (x, names) = design(d, &terms);
    let link = match case["link"].as_str().unwrap() {
        "logit" => Link::Logit,
        "probit" => Link::Probit,
        l => panic!("{l}"),
    };
    let w = if case["weights"].is_null() { None } else { Some(nums(&case["weights"])) };
    let control = GlmControl { maxit: case["maxit"].as_u64().unwrap() as usize, ..GlmControl::default() };
    fit_binomial_glm_with(x.view(), &names, &d.treat, w.as_deref(), link, &control)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// Returns (max relative coefficient error, max absolute score error).
fn check(name: &str, fit: &PropensityFit, case: &Value) -> (f64, f64) {
    let est = nums(&case["estimate"]);
    let se = nums(&case["std_error"]);
    let z = nums(&case["z_value"]);
    let p = nums(&case["p_value"]);
    assert_eq!(fit.terms, strings(&case["terms"]), "{name}");
    let mut worst_coef = 0.0_f64;
    for (j, c) in fit.coefficients.iter().enumerate() {
        let e = rel(c.estimate, est[j]);
        worst_coef = worst_coef.max(e);
        assert!(e < 1e-6, "{name} {}: estimate {} vs R {} (rel {e:e})", c.term, c.estimate, est[j]);
        assert!(rel(c.std_error, se[j]) < 1e-6, "{name} {}: se {} vs R {}", c.term, c.std_error, se[j]);
        assert!(rel(c.z_value, z[j]) < 1e-6, "{name} {}: z {} vs R {}", c.term, c.z_value, z[j]);
        assert!(rel(c.p_value, p[j]) < 1e-6 || (c.p_value - p[j]).abs() < 1e-300, "{name} {}: p", c.term);
    }
    let fitted = nums(&case["fitted"]);
    let lp = nums(&case["linear_predictor"]);
    let worst_score = fit.fitted.iter().zip(&fitted).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst_score < 1e-8, "{name}: max |score - R| = {worst_score:e}");
    let worst_lp = fit.linear_predictor.iter().zip(&lp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst_lp < 1e-8 * lp.iter().fold(1.0_f64, |m, v| m.max(v.abs())), "{name}: max |eta - R| = {worst_lp:e}");
    for (what, ours, theirs) in [
        ("deviance", fit.deviance, case["deviance"].as_f64().unwrap()),
        ("null deviance", fit.null_deviance, case["null_deviance"].as_f64().unwrap()),
        ("aic", fit.aic, case["aic"].as_f64().unwrap()),
    ] {
        assert!(rel(ours, theirs) < 1e-8 || (ours - theirs).abs() < 1e-12, "{name}: {what} {ours} vs R {theirs}");
    }
    assert_eq!(fit.iterations as u64, case["iterations"].as_u64().unwrap(), "{name}: iterations");
    assert_eq!(fit.converged, case["converged"].as_bool().unwrap(), "{name}: converged");
    assert_eq!(fit.df_residual as u64, case["df_residual"].as_u64().unwrap(), "{name}");
    assert_eq!(fit.df_null as u64, case["df_null"].as_u64().unwrap(), "{name}");
    let r_warn = strings(&case["warnings"]);
    let sep = r_warn.iter().any(|w| w.contains("fitted probabilities numerically 0 or 1 occurred"));
    let nonconv = r_warn.iter().any(|w| w.contains("did not converge"));
    assert_eq!(
        fit.warnings.iter().any(|w| matches!(w, PropensityWarning::FittedProbabilitiesZeroOrOne { .. })),
        sep,
        "{name}: separation warning {:?} vs R {r_warn:?}",
        fit.warnings
    );
    assert_eq!(
        fit.warnings.iter().any(|w| matches!(w, PropensityWarning::NotConverged { .. })),
        nonconv,
        "{name}: convergence warning"
    );
    eprintln!("{name}: max rel coef error {worst_coef:.2e}, max abs score error {worst_score:.2e}, eta {worst_lp:.2e}");
    (worst_coef, worst_score)
}

fn run(name: &str) {
    let d = load();
    let r = reference();
    let case = &r["glm"][name];
    let fit = fit_case(&d, case).unwrap_or_else(|e| panic!("{name}: {e}"));
    check(name, &fit, case);
}

#[test]
fn logit_matches_glm() {
    run("logit");
}

#[test]
fn probit_matches_glm() {
    run("probit");
}

#[test]
fn interaction_matches_glm() {
    run("interaction");
}

#[test]
fn prior_weights_match_glm() {
    run("weighted");
}

#[test]
fn quasi_separation_matches_glm_path() {
    run("separation");
    run("probit_separation");
}

#[test]
fn complete_separation_warns_and_matches_glm_path() {
    run("complete_separation");
}

#[test]
fn stopped_at_maxit_matches_glm_iterate() {
    run("maxit3");
}

#[test]
fn several_qr_blocks_match_glm() {
    // 6140 rows: the two-level QR reduces two row blocks; R fits the same stacked data.
    let d = load();
    let rep = |v: &Vec<f64>| v.iter().cycle().take(v.len() * 10).copied().collect::<Vec<f64>>();
    let big = Lalonde {
        treat: rep(&d.treat),
        age: rep(&d.age),
        educ: rep(&d.educ),
        race: d.race.iter().cycle().take(d.race.len() * 10).cloned().collect(),
        married: rep(&d.married),
        nodegree: rep(&d.nodegree),
        re74: rep(&d.re74),
        re75: rep(&d.re75),
    };
    let r = reference();
    let case = &r["glm"]["replicated10"];
    let fit = fit_case(&big, case).unwrap();
    check("replicated10", &fit, case);
}

#[test]
fn aliased_column_is_named_like_glm() {
    let d = load();
    let r = reference();
    let case = &r["glm"]["collinear"];
    let aliased = strings(&case["aliased"]);
    assert_eq!(aliased, ["re74x2"]);
    match fit_case(&d, case) {
        Err(PropensityError::Collinear { term, with, all_aliased }) => {
            assert_eq!(term, "re74x2");
            assert_eq!(all_aliased, aliased);
            let mut with = with;
            with.sort();
            assert_eq!(with, ["re74", "re75"]);
        }
        other => panic!("expected Collinear, got {other:?}"),
    }
}

#[test]
fn distance_helpers() {
    let d = load();
    let r = reference();
    let fit = fit_case(&d, &r["glm"]["logit"]).unwrap();
    assert_eq!(fit.score(), &fit.fitted[..]);
    for (&l, &s) in fit.linear().iter().zip(fit.score()) {
        assert!((l - (s / (1.0 - s)).ln()).abs() < 1e-9);
    }
}
