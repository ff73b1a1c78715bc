//! Satterthwaite tests of contrasts (lmerTest's `contest1D`) and prior weights (lme4's `weights`) against
//! lme4 1.1 + lmerTest, on sleepstudy arranged as a difference-in-differences design. Expected values and data
//! were written by `tests/reference/contrast_weights_reference.R` (run from `crates/multilevel`).
//!
//! Tolerances (relative): estimates 1e-5, standard errors and variance parameters 1e-4, log-likelihood and
//! criteria 1e-6, Satterthwaite df 1e-3.

use psmeval_frame::{Column, Table, build_model_frame, parse_formula};
use psmeval_multilevel::{LmmOptions, MixedModel, MixedModelError, fit_lmm};
use serde_json::Value;

fn data() -> Table {
    let path = format!("{}/tests/data/sleepstudy_did.csv", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|s| s.trim_matches('"').to_string()).collect();
    let rows: Vec<Vec<String>> =
        lines.map(|l| l.split(',').map(|s| s.trim_matches('"').to_string()).collect()).collect();
    let mut t = Table::new();
    for (k, h) in header.iter().enumerate() {
        let col = if h == "Subject" {
            Column::Text(rows.iter().map(|r| Some(r[k].clone())).collect())
        } else {
            Column::Numeric(rows.iter().map(|r| r[k].parse().unwrap()).collect())
        };
        t.push(h.clone(), col).unwrap();
    }
    t
}

fn reference() -> Value {
    let path = format!("{}/tests/reference/contrast_weights_reference.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-8);
    assert!(err <= rel, "{what}: got {got}, lme4 {want}, relative error {err:e} > {rel:e}");
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn did_contrasts_match_contest1d() {
    let r = reference();
    let did = &r["did"];
    let f = parse_formula(did["formula"].as_str().unwrap()).unwrap();
    let frame = build_model_frame(&f, &data()).unwrap();
    let names: Vec<String> = did["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    assert_eq!(frame.x_names, names);
    let fit = fit_lmm(&frame, &LmmOptions::default()).unwrap();
    close("logLik", fit.log_likelihood(), did["log_likelihood"].as_f64().unwrap(), 1e-6);
    for c in did["contrasts"].as_array().unwrap() {
        let l = nums(&c["l"]);
        let t = fit.contrast(&l).unwrap();
        close("estimate", t.estimate, c["estimate"].as_f64().unwrap(), 1e-5);
        close("std_error", t.std_error, c["std_error"].as_f64().unwrap(), 1e-4);
        close("df", t.df.expect("Satterthwaite df"), c["df"].as_f64().unwrap(), 1e-3);
        close("t", t.statistic, c["t_value"].as_f64().unwrap(), 1e-4);
        close("p", t.p_value, c["p_value"].as_f64().unwrap(), 1e-3);
    }
    // A unit contrast reproduces the coefficient table.
    let mut unit = vec![0.0; names.len()];
    unit[6] = 1.0;
    let t = fit.contrast(&unit).unwrap();
    assert_eq!(t.estimate, fit.fixed_effects()[6].estimate);
    close("unit df", t.df.unwrap(), fit.fixed_effects()[6].df.unwrap(), 1e-12);
    assert!(matches!(fit.contrast(&[1.0]), Err(MixedModelError::DimensionMismatch { .. })));
    // Without Satterthwaite: the same estimates, no df, NaN p-values.
    let plain = fit_lmm(&frame, &LmmOptions { satterthwaite: false, ..LmmOptions::default() }).unwrap();
    assert_eq!(plain.beta(), fit.beta());
    assert!(plain.fixed_effects().iter().all(|fe| fe.df.is_none() && fe.p_value.is_nan()));
    let t = plain.contrast(&unit).unwrap();
    assert_eq!((t.estimate, t.df), (fit.fixed_effects()[6].estimate, None));
    assert!(t.p_value.is_nan());
}

#[test]
fn weighted_fits_match_lmer_weights() {
    let r = reference();
    let w_ref = &r["weighted"];
    let data = data();
    let f = parse_formula(w_ref["formula"].as_str().unwrap()).unwrap();
    let frame = build_model_frame(&f, &data).unwrap();
    let w = data.numeric("w").unwrap().to_vec();
    for want in w_ref["fits"].as_array().unwrap() {
        let reml = want["reml"].as_bool().unwrap();
        let fit = fit_lmm(&frame, &LmmOptions { reml, weights: Some(w.clone()), ..LmmOptions::default() }).unwrap();
        close("logLik", fit.log_likelihood(), want["log_likelihood"].as_f64().unwrap(), 1e-6);
        close("criterion", fit.criterion, want["criterion"].as_f64().unwrap(), 1e-6);
        close("AIC", fit.aic(), want["aic"].as_f64().unwrap(), 1e-6);
        close("BIC", fit.bic(), want["bic"].as_f64().unwrap(), 1e-6);
        close("sigma", fit.sigma, want["sigma"].as_f64().unwrap(), 1e-4);
        for (k, (b, e)) in nums(&want["beta"]).iter().zip(fit.fixed_effects()).enumerate() {
            close(&format!("beta[{k}]"), e.estimate, *b, 1e-5);
        }
        for (k, (s, e)) in nums(&want["std_error"]).iter().zip(fit.fixed_effects()).enumerate() {
            close(&format!("se[{k}]"), e.std_error, *s, 1e-4);
        }
        for (k, (d, e)) in nums(&want["df"]).iter().zip(fit.fixed_effects()).enumerate() {
            close(&format!("df[{k}]"), e.df.unwrap(), *d, 1e-3);
        }
        for (k, (t, g)) in nums(&want["theta"]).iter().zip(fit.theta()).enumerate() {
            assert!((t - g).abs() <= 1e-4 * t.abs().max(1.0), "theta[{k}]: {g} vs {t}");
        }
    }
    // Unit weights give the unweighted fit; bad weights are named.
    let ones = vec![1.0; w.len()];
    let weighted = |w: &[f64]| fit_lmm(&frame, &LmmOptions { weights: Some(w.to_vec()), ..LmmOptions::default() });
    let a = weighted(&ones).unwrap();
    let b = fit_lmm(&frame, &LmmOptions::default()).unwrap();
    assert_eq!(a.log_likelihood(), b.log_likelihood());
    let mut bad = w.clone();
    bad[7] = 0.0;
    assert_eq!(weighted(&bad), Err(MixedModelError::NonPositiveWeight { row: 8, value: 0.0 }));
    assert!(matches!(weighted(&w[1..]), Err(MixedModelError::DimensionMismatch { .. })));
}
