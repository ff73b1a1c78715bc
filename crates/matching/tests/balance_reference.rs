//! Balance tables against MatchIt 4.5.1's `summary.matchit` on lalonde (tests/reference/propensity_balance.R).
//!
//! The weights, distances, discarded flags and sampling weights come from R, so these tests check the
//! balance computation alone. Tolerance: every statistic 1e-6 absolute (means of re74/re75, in the
//! thousands, 1e-6 relative); effective sample sizes 1e-9 relative; counts exactly. `NA` in R must be
//! `None` (SMD, variance ratio).

mod lalonde_data;

use lalonde_data::{Lalonde, indicator, load, matrix, nums, reference, strings};
use psmeval_matching::balance::{BalanceOptions, BalanceRow, BalanceTable, SdDenominator, balance, balance_with};
use serde_json::Value;

fn covariates(d: &Lalonde, case: &Value) -> (ndarray::Array2<f64>, Vec<String>) {
    let mut cols: Vec<(&str, Vec<f64>)> = Vec::new();
    if !case["distance"].is_null() {
        cols.push(("distance", nums(&case["distance"])));
    }
    let names = strings(&case["covariate_names"]);
    assert_eq!(names, ["age", "educ", "raceblack", "racehispan", "racewhite", "married", "nodegree", "re74", "re75"]);
    cols.extend([
        ("age", d.age.clone()),
        ("educ", d.educ.clone()),
        ("raceblack", indicator(&d.race, "black")),
        ("racehispan", indicator(&d.race, "hispan")),
        ("racewhite", indicator(&d.race, "white")),
        ("married", d.married.clone()),
        ("nodegree", d.nodegree.clone()),
        ("re74", d.re74.clone()),
        ("re75", d.re75.clone()),
    ]);
    matrix(&cols)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

fn opt_close(a: Option<f64>, b: f64) -> bool {
    match a {
        None => b.is_nan(),
        Some(a) => close(a, b),
    }
}

fn compare(label: &str, rows: &[BalanceRow], r: &Value) -> f64 {
    let terms = strings(&r["term"]);
    assert_eq!(rows.iter().map(|r| r.term.clone()).collect::<Vec<_>>(), terms, "{label}");
    let col = |k: &str| nums(&r[k]);
    let (mt, mc, smd, vr, em, ex) =
        (col("mean_treated"), col("mean_control"), col("smd"), col("var_ratio"), col("ecdf_mean"), col("ecdf_max"));
    let mut worst = 0.0_f64;
    for (i, row) in rows.iter().enumerate() {
        let t = &row.term;
        assert!(close(row.mean_treated, mt[i]), "{label} {t}: mean treated {} vs {}", row.mean_treated, mt[i]);
        assert!(close(row.mean_control, mc[i]), "{label} {t}: mean control {} vs {}", row.mean_control, mc[i]);
        assert!(opt_close(row.smd, smd[i]), "{label} {t}: smd {:?} vs {}", row.smd, smd[i]);
        assert!(opt_close(row.var_ratio, vr[i]), "{label} {t}: var ratio {:?} vs {}", row.var_ratio, vr[i]);
        assert!(close(row.ecdf_mean, em[i]), "{label} {t}: ecdf mean {} vs {}", row.ecdf_mean, em[i]);
        assert!(close(row.ecdf_max, ex[i]), "{label} {t}: ecdf max {} vs {}", row.ecdf_max, ex[i]);
        for (a, b) in [(row.smd.unwrap_or(0.0), smd[i]), (row.ecdf_mean, em[i]), (row.ecdf_max, ex[i])] {
            if b.is_finite() {
                worst = worst.max((a - b).abs());
            }
        }
    }
    worst
}

fn compare_n(label: &str, t: &BalanceTable, case: &Value) {
    let rows = strings(&case["nn_rows"]);
    assert_eq!(rows, ["All (ESS)", "All", "Matched (ESS)", "Matched", "Unmatched", "Discarded"]);
    for (g, key) in [(&t.n.control, "nn_control"), (&t.n.treated, "nn_treated")] {
        let v = nums(&case[key]);
        assert!((g.all_ess - v[0]).abs() < 1e-9 * v[0], "{label} {key} all ess {} vs {}", g.all_ess, v[0]);
        assert_eq!(g.all as f64, v[1], "{label} {key}");
        assert!((g.matched_ess - v[2]).abs() < 1e-9 * v[2], "{label} {key} matched ess {} vs {}", g.matched_ess, v[2]);
        assert_eq!([g.matched, g.unmatched, g.discarded].map(|x| x as f64), [v[3], v[4], v[5]], "{label} {key}");
    }
}

fn run(name: &str) {
    let d = load();
    let r = reference();
    let case = &r["balance"][name];
    let (x, names) = covariates(&d, case);
    let treat: Vec<bool> = d.treat.iter().map(|&t| t == 1.0).collect();
    let sw = if case["s_weights"].is_null() { None } else { Some(nums(&case["s_weights"])) };
    let discarded: Vec<bool> = case["discarded"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    let opts =
        BalanceOptions { sd_denominator: SdDenominator::Treated, sampling_weights: sw.as_deref(), discarded: None };
    let before = balance_with(x.view(), &names, &treat, None, &opts).unwrap();
    let worst_before = compare(&format!("{name} before"), &before.rows, &case["before"]);
    if sw.is_none() {
        assert_eq!(balance(x.view(), &names, &treat, None).unwrap(), before);
    }
    let mut worst_after = f64::NAN;
    if !case["after"].is_null() {
        let w = nums(&case["weights"]);
        let opts = BalanceOptions { discarded: Some(&discarded), ..opts };
        let after = balance_with(x.view(), &names, &treat, Some(&w), &opts).unwrap();
        worst_after = compare(&format!("{name} after"), &after.rows, &case["after"]);
        compare_n(name, &after, case);
    } else {
        compare_n(name, &before, case);
    }
    eprintln!("{name}: max abs error (smd, ecdf) before {worst_before:.2e}, after {worst_after:.2e}");
}

#[test]
fn full_sample_matches_matchit() {
    run("before");
}

#[test]
fn subclass_weights_and_discards_match_matchit() {
    run("subclass");
}

#[test]
fn cem_weights_with_unmatched_units_match_matchit() {
    run("cem");
}

#[test]
fn sampling_weights_match_matchit() {
    run("subclass_sw");
}
