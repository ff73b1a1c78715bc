//! Helpers shared by the reference-value tests: reading R's `write.csv` files, JSON numbers, and the
//! comparison of a linear mixed-model fit with lme4/lmerTest's (tolerances stated at `check_lmm`).

#![allow(dead_code)]

use psmeval_frame::{Column, Table};
use psmeval_multilevel::{LmmFit, MixedModel};
use serde_json::Value;

/// A CSV written by R's `write.csv`: quoted fields become text columns, unquoted ones numbers.
pub fn read_table(name: &str) -> Table {
    let path = format!("{}/tests/data/{name}.csv", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(|s| s.trim_matches('"').to_string()).collect();
    let rows: Vec<Vec<&str>> = lines.filter(|l| !l.is_empty()).map(|l| l.split(',').collect()).collect();
    let mut table = Table::new();
    for (j, h) in header.iter().enumerate() {
        let quoted = rows[0][j].starts_with('"');
        let col = if quoted {
            Column::Text(rows.iter().map(|r| Some(r[j].trim_matches('"').to_string())).collect())
        } else {
            Column::Numeric(rows.iter().map(|r| r[j].parse().unwrap()).collect())
        };
        table.push(h.clone(), col).unwrap();
    }
    table
}

/// A JSON number or array of numbers as a vector (R's auto_unbox turns length-1 vectors into scalars).
pub fn nums(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_f64().expect("number")).collect(),
        x => vec![x.as_f64().expect("number")],
    }
}

thread_local! {
    /// Worst scaled error per quantity kind, for the printed agreement summary.
    pub static WORST: std::cell::RefCell<std::collections::BTreeMap<String, f64>> = Default::default();
}

pub fn record(what: &str, err: f64) {
    let kind = what.split_whitespace().nth(1).unwrap_or(what).to_string();
    WORST.with(|w| {
        let mut w = w.borrow_mut();
        let e = w.entry(kind).or_insert(0.0);
        *e = e.max(err);
    });
}

pub fn close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1.0);
    record(what, err);
    assert!(err <= rel, "{what}: got {got}, lme4 {want}, scaled error {err:.3e} > {rel:.1e}");
}

pub fn close_rel(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs();
    record(what, err);
    assert!(err <= rel, "{what}: got {got}, lme4 {want}, relative error {err:.3e} > {rel:.1e}");
}

/// Compares a fit with the reference `r[name_reml|name_ml]`: logLik, criterion, AIC, BIC 1e-6 relative; σ,
/// θ, variance components, correlations and conditional SDs 1e-4 (scaled by max(1, |value|)); β 1e-5; SEs
/// 1e-4 relative; Satterthwaite df 1e-3 relative; conditional modes within 1e-3 conditional SDs. Levels are
/// matched by label, so the reference may hold a subset of them.
pub fn check_lmm(name: &str, reml: bool, fit: &LmmFit, r: &Value) {
    let key = format!("{name}_{}", if reml { "reml" } else { "ml" });
    let r = &r[&key];
    let tag = |s: &str| format!("{key} {s}");
    assert_eq!(fit.reml, r["reml"].as_bool().unwrap());
    close_rel(&tag("logLik"), fit.log_likelihood(), r["loglik"].as_f64().unwrap(), 1e-6);
    close_rel(&tag("criterion"), fit.criterion, r["criterion"].as_f64().unwrap(), 1e-6);
    close_rel(&tag("AIC"), fit.aic(), r["aic"].as_f64().unwrap(), 1e-6);
    close_rel(&tag("BIC"), fit.bic(), r["bic"].as_f64().unwrap(), 1e-6);
    close(&tag("sigma"), fit.sigma, r["sigma"].as_f64().unwrap(), 1e-4);
    assert_eq!(fit.singular(), r["singular"].as_bool().unwrap(), "{key} singular");
    let theta = nums(&r["theta"]);
    assert_eq!(fit.theta().len(), theta.len());
    for (k, (g, w)) in fit.theta().iter().zip(&theta).enumerate() {
        close(&tag(&format!("theta[{k}]")), *g, *w, 1e-4);
    }
    let names: Vec<String> = r["beta_names"].as_array().map_or_else(
        || vec![r["beta_names"].as_str().unwrap().to_string()],
        |a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
    );
    let (beta, se, df) = (nums(&r["beta"]), nums(&r["std_error"]), nums(&r["df"]));
    for (j, fe) in fit.fixed_effects().iter().enumerate() {
        assert_eq!(fe.term, names[j], "{key} column names");
        close(&tag(&format!("beta {}", fe.term)), fe.estimate, beta[j], 1e-5);
        close_rel(&tag(&format!("SE {}", fe.term)), fe.std_error, se[j], 1e-4);
        close_rel(&tag(&format!("df {}", fe.term)), fe.df.expect("Satterthwaite df"), df[j], 1e-3);
    }
    // Variance components: lme4's VarCorr rows with var2 = null are variances (or the residual).
    let vc: Vec<&Value> = r["varcomp"].as_array().unwrap().iter().collect();
    let variances: Vec<&Value> = vc.iter().copied().filter(|v| v["var2"].is_null()).collect();
    assert_eq!(variances.len(), fit.variance_components().len(), "{key} number of variance components");
    for (got, want) in fit.variance_components().iter().zip(&variances) {
        // lme4 names a factor's second `||` term `Subject.1`; we keep the factor's name.
        let want_group = want["group"].as_str().unwrap();
        let want_group = match want_group.rsplit_once('.') {
            Some((g, k)) if k.chars().all(|c| c.is_ascii_digit()) => g,
            _ => want_group,
        };
        assert_eq!(got.group, want_group, "{key} group order");
        assert_eq!(got.term.as_deref(), want["var1"].as_str(), "{key} term");
        close(
            &tag(&format!("variance {} {:?}", got.group, got.term)),
            got.variance,
            want["vcov"].as_f64().unwrap(),
            1e-4,
        );
    }
    let cors: Vec<&Value> = vc.iter().copied().filter(|v| !v["var2"].is_null()).collect();
    assert_eq!(cors.len(), fit.correlations().len());
    for (got, want) in fit.correlations().iter().zip(&cors) {
        close(&tag("correlation"), got.correlation, want["sdcor"].as_f64().unwrap(), 1e-4);
    }
    // Conditional modes and SDs, matched by group and level label; columns in order.
    let mut seen = 0;
    for want in r["ranef"].as_array().unwrap() {
        let group = want["group"].as_str().unwrap();
        let got_terms: Vec<_> = fit.ranef().iter().filter(|t| t.group == group).collect();
        let levels: Vec<&str> = want["levels"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let values = want["values"].as_array().unwrap();
        let sds = want["cond_sd"].as_array().unwrap();
        for (li, level) in levels.iter().enumerate() {
            let want_v = nums(&values[li]);
            let want_sd = nums(&sds[li]);
            // Concatenate this group's terms (|| terms are split, lme4 binds them as columns).
            let mut got_v: Vec<f64> = Vec::new();
            let mut got_sd: Vec<f64> = Vec::new();
            for t in &got_terms {
                let j = t.levels.iter().position(|l| l == level).unwrap_or_else(|| panic!("{key}: level {level}"));
                got_v.extend(&t.modes[j]);
                got_sd.extend(&t.cond_sd[j]);
            }
            assert_eq!(got_v.len(), want_v.len());
            for c in 0..want_v.len() {
                let scale = want_sd[c].max(1e-8);
                let err = (got_v[c] - want_v[c]).abs() / scale;
                assert!(
                    err < 1e-3,
                    "{key} ranef {group} {level}[{c}]: {} vs {} ({err:.2e} cond. SDs)",
                    got_v[c],
                    want_v[c]
                );
                close(&tag(&format!("condSD {group} {level}")), got_sd[c], want_sd[c], 1e-4);
            }
            seen += 1;
        }
    }
    assert!(seen > 0);
}
