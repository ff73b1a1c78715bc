//! Reference-value tests against lme4 1.1 (lmer) and lmerTest (Satterthwaite df). The expected values and the
//! data sets were written by `tests/reference/lme4_reference.R` (run from `crates/multilevel`); CI needs no R.
//!
//! Tolerances (relative unless stated): log-likelihood and criterion 1e-6, fixed effects 1e-5, standard errors
//! 1e-4, variance components, θ (absolute 1e-4 scaled by max(1, |θ|)), conditional modes and SDs 1e-4,
//! Satterthwaite df 1e-3.

use std::collections::HashMap;

use ndarray::Array2;
use psmeval_frame::{ModelFrame, RandomTerm};
use psmeval_multilevel::{LmmFit, LmmOptions, MixedModel, MixedModelError, fit_lmm, likelihood_ratio_test};
use serde_json::Value;

mod common;
use common::{WORST, check_lmm, close};

/// A CSV file as columns of strings (R's `write.csv`: quoted text, unquoted numbers, no embedded commas).
fn read_csv(name: &str) -> HashMap<String, Vec<String>> {
    let path = format!("{}/tests/data/{name}.csv", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let unquote = |s: &str| s.trim().trim_matches('"').to_string();
    let header: Vec<String> = lines.next().expect("header").split(',').map(unquote).collect();
    let mut cols: HashMap<String, Vec<String>> = header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        for (h, v) in header.iter().zip(line.split(',')) {
            cols.get_mut(h).expect("column").push(unquote(v));
        }
    }
    cols
}

fn num(col: &[String]) -> Vec<f64> {
    col.iter().map(|s| s.parse().expect("number")).collect()
}

/// Grouping factor from labels: levels sorted (R sorts these labels the same way for our data sets).
fn factor(labels: &[String]) -> (Vec<String>, Vec<u32>) {
    let mut levels: Vec<String> = labels.to_vec();
    levels.sort();
    levels.dedup();
    let codes = labels.iter().map(|l| levels.binary_search(l).expect("level") as u32).collect();
    (levels, codes)
}

fn term(group: &str, labels: &[String], names: &[&str], z: Array2<f64>) -> RandomTerm {
    let (levels, codes) = factor(labels);
    RandomTerm { group: group.to_string(), levels, codes, names: names.iter().map(|s| s.to_string()).collect(), z }
}

fn intercept_term(group: &str, labels: &[String]) -> RandomTerm {
    term(group, labels, &["(Intercept)"], Array2::ones((labels.len(), 1)))
}

fn frame(y: Vec<f64>, x: Array2<f64>, x_names: &[&str], random: Vec<RandomTerm>) -> ModelFrame {
    let n = y.len();
    ModelFrame {
        response_name: "y".to_string(),
        y,
        x,
        x_names: x_names.iter().map(|s| s.to_string()).collect(),
        random,
        rows: (0..n).collect(),
        n_dropped: 0,
    }
}

fn paste(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().zip(b).map(|(u, v)| format!("{u}:{v}")).collect()
}

/// The model frames of the reference models, by name.
fn model(name: &str) -> ModelFrame {
    match name {
        "sleep_corr" | "sleep_uncorr" => {
            let d = read_csv("sleepstudy");
            let y = num(&d["Reaction"]);
            let days = num(&d["Days"]);
            let n = y.len();
            let x = Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { 1.0 } else { days[i] });
            let random = if name == "sleep_corr" {
                vec![term("Subject", &d["Subject"], &["(Intercept)", "Days"], x.clone())]
            } else {
                vec![
                    intercept_term("Subject", &d["Subject"]),
                    term("Subject", &d["Subject"], &["Days"], Array2::from_shape_fn((n, 1), |(i, _)| days[i])),
                ]
            };
            frame(y, x, &["(Intercept)", "Days"], random)
        }
        "dyestuff" | "dyestuff2" => {
            let d = read_csv(name);
            let y = num(&d["Yield"]);
            let n = y.len();
            frame(y, Array2::ones((n, 1)), &["(Intercept)"], vec![intercept_term("Batch", &d["Batch"])])
        }
        "penicillin" => {
            let d = read_csv("penicillin");
            let y = num(&d["diameter"]);
            let n = y.len();
            let random = vec![intercept_term("plate", &d["plate"]), intercept_term("sample", &d["sample"])];
            frame(y, Array2::ones((n, 1)), &["(Intercept)"], random)
        }
        "pastes" => {
            let d = read_csv("pastes");
            let y = num(&d["strength"]);
            let n = y.len();
            // (1 | batch/cask) = (1 | batch) + (1 | cask:batch), written in lme4's expansion order.
            let random = vec![
                intercept_term("batch", &d["batch"]),
                intercept_term("cask:batch", &paste(&d["cask"], &d["batch"])),
            ];
            frame(y, Array2::ones((n, 1)), &["(Intercept)"], random)
        }
        "cake" => {
            let d = read_csv("cake");
            let y = num(&d["angle"]);
            let n = y.len();
            let recipe = &d["recipe"];
            let temp = num(&d["temperature"]);
            let temps = [185.0, 195.0, 205.0, 215.0, 225.0];
            let mut names = vec!["(Intercept)".to_string(), "recipeB".into(), "recipeC".into()];
            names.extend(temps.iter().map(|t| format!("temperature{t}")));
            for t in temps {
                for r in ["B", "C"] {
                    names.push(format!("recipe{r}:temperature{t}"));
                }
            }
            let x = Array2::from_shape_fn((n, names.len()), |(i, j)| {
                let rb = f64::from(u8::from(recipe[i] == "B"));
                let rc = f64::from(u8::from(recipe[i] == "C"));
                match j {
                    0 => 1.0,
                    1 => rb,
                    2 => rc,
                    3..=7 => f64::from(u8::from(temp[i] == temps[j - 3])),
                    _ => {
                        let k = j - 8;
                        let tt = f64::from(u8::from(temp[i] == temps[k / 2]));
                        tt * if k % 2 == 0 { rb } else { rc }
                    }
                }
            });
            let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
            let random = vec![intercept_term("recipe:replicate", &paste(recipe, &d["replicate"]))];
            frame(y, x, &names_ref, random)
        }
        other => panic!("unknown model {other}"),
    }
}

fn reference() -> Value {
    let path = format!("{}/tests/reference/lme4_reference.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference json")).expect("valid json")
}

const MODELS: [&str; 7] = ["sleep_corr", "sleep_uncorr", "dyestuff", "dyestuff2", "penicillin", "pastes", "cake"];

#[test]
fn all_reference_models_reml_and_ml() {
    let r = reference();
    for name in MODELS {
        let frame = model(name);
        for reml in [true, false] {
            let fit = fit_lmm(&frame, &LmmOptions { reml, ..LmmOptions::default() })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(fit.converged(), "{name}: {:?}", fit.optimizer());
            check_lmm(name, reml, &fit, &r);
        }
    }
    WORST.with(|w| eprintln!("worst errors against lme4/lmerTest: {:#?}", w.borrow()));
}

#[test]
fn likelihood_ratio_test_matches_anova() {
    let r = reference();
    let ml = LmmOptions { reml: false, ..LmmOptions::default() };
    let small = fit_lmm(&model("sleep_uncorr"), &ml).unwrap();
    let large = fit_lmm(&model("sleep_corr"), &ml).unwrap();
    let lrt = likelihood_ratio_test(&small, &large).unwrap();
    assert_eq!(lrt.df, 1);
    // The statistic is a difference of two log-likelihoods of about -875: compare absolutely (1e-5).
    let want = r["lrt_sleep"]["chisq"].as_f64().unwrap();
    assert!((lrt.chisq - want).abs() < 1e-5, "chisq {} vs {want}", lrt.chisq);
    close("LRT p", lrt.p_value, r["lrt_sleep"]["p_value"].as_f64().unwrap(), 1e-4);
    let reml = fit_lmm(&model("sleep_corr"), &LmmOptions::default()).unwrap();
    assert!(matches!(likelihood_ratio_test(&small, &reml), Err(MixedModelError::NotComparable { .. })));
}

#[test]
fn icc_and_predictions() {
    let frame = model("dyestuff");
    let fit = fit_lmm(&frame, &LmmOptions::default()).unwrap();
    let tau2 = fit.variance_components()[0].variance;
    let icc = fit.icc().expect("random-intercept model has an ICC");
    assert!((icc - tau2 / (tau2 + fit.sigma * fit.sigma)).abs() < 1e-12);
    let fixed = fit.predict(&frame, false).unwrap();
    let full = fit.predict(&frame, true).unwrap();
    // Row 0 is batch A: the difference is batch A's conditional mode.
    let a = fit.ranef()[0].levels.iter().position(|l| l == "A").unwrap();
    assert!((full[0] - fixed[0] - fit.ranef()[0].modes[a][0]).abs() < 1e-9);
    assert!((fixed[0] - fit.beta()[0]).abs() < 1e-12);
    assert!(fit_lmm(&model("sleep_corr"), &LmmOptions::default()).unwrap().icc().is_none());
}

/// The optimizer's record: one BOBYQA run over θ from lme4's start (it converged, so no restart), evaluations
/// summed, the final θ.
#[test]
fn optimizer_record() {
    let fit = fit_lmm(&model("sleep_corr"), &LmmOptions::default()).unwrap();
    let opt = fit.optimizer();
    assert_eq!(opt.theta_initial, [1.0, 0.0, 1.0]);
    assert_eq!(opt.lower_bounds, [0.0, f64::NEG_INFINITY, 0.0]);
    assert_eq!(opt.theta_final, fit.theta());
    assert_eq!(opt.runs.len(), 1);
    assert!(opt.runs[0].converged);
    assert_eq!(opt.evaluations, opt.runs.iter().map(|r| r.evaluations).sum::<usize>());
    assert_eq!(opt.objective, fit.criterion);
    assert!(opt.converged && fit.converged());
}

#[test]
fn error_no_observations() {
    let f = frame(Vec::new(), Array2::zeros((0, 1)), &["(Intercept)"], vec![]);
    assert_eq!(fit_lmm(&f, &LmmOptions::default()), Err(MixedModelError::NoObservations));
}

#[test]
fn rank_deficient_columns_are_dropped_and_named() {
    let mut f = model("sleep_corr");
    let n = f.y.len();
    let days = f.x.column(1).to_owned();
    let mut x = Array2::zeros((n, 3));
    for i in 0..n {
        x[[i, 0]] = 1.0;
        x[[i, 1]] = days[i];
        x[[i, 2]] = 2.0 * days[i] + 1.0;
    }
    let full_rank = fit_lmm(&f, &LmmOptions::default()).unwrap();
    f.x = x;
    f.x_names.push("twice_days".to_string());
    // As lme4: the aliased column is dropped and named; the fit is that of the full-rank model.
    let fit = fit_lmm(&f, &LmmOptions::default()).unwrap();
    assert_eq!(fit.dropped_columns(), ["twice_days".to_string()]);
    let terms = |f: &LmmFit| f.fixed_effects().iter().map(|e| e.term.clone()).collect::<Vec<_>>();
    assert_eq!(terms(&fit), terms(&full_rank));
    assert_eq!(fit.beta(), full_rank.beta());
    assert_eq!(fit.log_likelihood(), full_rank.log_likelihood());
    // Nothing left to fit: an error naming the column.
    f.x = Array2::zeros((n, 1));
    f.x_names = vec!["zero".to_string()];
    assert_eq!(fit_lmm(&f, &LmmOptions::default()), Err(MixedModelError::RankDeficient { column: "zero".to_string() }));
}

#[test]
fn error_group_with_as_many_levels_as_observations() {
    let d = read_csv("dyestuff");
    let y = num(&d["Yield"]);
    let n = y.len();
    let ids: Vec<String> = (0..n).map(|i| format!("{i:03}")).collect();
    let f = frame(y, Array2::ones((n, 1)), &["(Intercept)"], vec![intercept_term("obs", &ids)]);
    assert_eq!(
        fit_lmm(&f, &LmmOptions::default()),
        Err(MixedModelError::TooManyLevels { group: "obs".to_string(), levels: n, n_obs: n })
    );
}

#[test]
fn error_non_finite_response() {
    let mut f = model("dyestuff");
    f.y[4] = f64::NAN;
    assert!(matches!(fit_lmm(&f, &LmmOptions::default()), Err(MixedModelError::NonFinite { row: 5, .. })));
}

#[test]
fn error_dimension_mismatch_in_codes() {
    let mut f = model("dyestuff");
    f.random[0].codes.pop();
    assert!(matches!(fit_lmm(&f, &LmmOptions::default()), Err(MixedModelError::DimensionMismatch { .. })));
}

#[test]
fn error_no_random_terms() {
    let mut f = model("dyestuff");
    f.random.clear();
    assert_eq!(fit_lmm(&f, &LmmOptions::default()), Err(MixedModelError::NoRandomTerms));
}
