//! The entry point [`match_units`] on MatchIt's lalonde data: the same matched sets as the direct path
//! (`fit_binomial_glm` → `nearest` / `optimal` on a hand-built design), MatchIt's own snapshot for the
//! default spec, sizes consistent with the matches, typed errors naming the option at fault, the spec's
//! serde format, and a `MatchResult` that round-trips through JSON with its fields in results-file order.
//!
//! Tolerances: none; every comparison is exact (same inputs, same code path).

mod lalonde_data;

use lalonde_data::{indicator, load, matrix};
use psmeval_frame::{Column, Table};
use psmeval_matching::matches::Problem;
use psmeval_matching::nearest::{Caliper, NearestOptions, Order, nearest};
use psmeval_matching::optimal::{OptimalOptions, optimal};
use psmeval_matching::propensity::{Link, PropensityFit, fit_binomial_glm};
use psmeval_matching::support::Discard;
use psmeval_matching::{
    CommonSupport, DistanceLink, MatchError, MatchResult, MatchSpec, Method, SpecField, match_units,
};
use serde_json::Value;

const FORMULA: &str = "treat ~ age + educ + race + married + nodegree + re74 + re75";

struct Data {
    table: Table,
    treat: Vec<bool>,
    ids: Vec<String>,
}

fn rownames() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lalonde.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap().trim_matches('"').into())
        .collect()
}

fn data() -> Data {
    let d = load();
    let table = Table::new()
        .with("treat", Column::Numeric(d.treat.clone()))
        .and_then(|t| t.with("age", Column::Numeric(d.age.clone())))
        .and_then(|t| t.with("educ", Column::Numeric(d.educ.clone())))
        .and_then(|t| t.with("race", Column::Text(d.race.iter().cloned().map(Some).collect())))
        .and_then(|t| t.with("married", Column::Numeric(d.married.clone())))
        .and_then(|t| t.with("nodegree", Column::Numeric(d.nodegree.clone())))
        .and_then(|t| t.with("re74", Column::Numeric(d.re74.clone())))
        .and_then(|t| t.with("re75", Column::Numeric(d.re75.clone())))
        .unwrap();
    Data { table, treat: d.treat.iter().map(|&t| t == 1.0).collect(), ids: rownames() }
}

/// The propensity model fitted directly on the design R's `model.matrix` gives.
fn direct_fit(link: Link) -> PropensityFit {
    let d = load();
    let n = d.treat.len();
    let (x, names) = matrix(&[
        ("(Intercept)", vec![1.0; n]),
        ("age", d.age.clone()),
        ("educ", d.educ.clone()),
        ("racehispan", indicator(&d.race, "hispan")),
        ("racewhite", indicator(&d.race, "white")),
        ("married", d.married.clone()),
        ("nodegree", d.nodegree.clone()),
        ("re74", d.re74.clone()),
        ("re75", d.re75.clone()),
    ]);
    fit_binomial_glm(x.view(), &names, &d.treat, None, link).unwrap()
}

fn sets_by_id(r: &MatchResult) -> Vec<(String, Vec<String>)> {
    r.matches.iter().map(|s| (s.treated.to_string(), s.controls.iter().map(|c| c.to_string()).collect())).collect()
}

fn direct_sets(m: &psmeval_matching::matches::Matches, ids: &[String]) -> Vec<(String, Vec<String>)> {
    m.sets.iter().map(|s| (ids[s.treated].clone(), s.controls.iter().map(|&c| ids[c].clone()).collect())).collect()
}

/// Sizes and weights agree with the sets; ESS is (Σw)²/Σw² of the units' weights.
fn check_sizes(r: &MatchResult, treat: &[bool]) {
    let n = &r.n;
    assert_eq!(n.all_treated, treat.iter().filter(|t| **t).count());
    assert_eq!(n.all_control, treat.len() - n.all_treated);
    assert_eq!(n.matched_treated, r.matches.len());
    let mut controls: Vec<&psmeval_matching::Id> = r.matches.iter().flat_map(|s| &s.controls).collect();
    controls.sort();
    controls.dedup();
    assert_eq!(n.matched_control, controls.len());
    assert_eq!(n.unmatched_treated, r.unmatched_treated.len());
    assert_eq!(n.all_treated, n.matched_treated + n.unmatched_treated + n.discarded_treated);
    assert_eq!(n.all_control, n.matched_control + n.unmatched_control + n.discarded_control);
    for (group, ess) in [(true, n.ess_treated), (false, n.ess_control)] {
        let w: Vec<f64> = r.units.iter().filter(|u| u.treated == group).map(|u| u.weight).collect();
        let (s, s2) = (w.iter().sum::<f64>(), w.iter().map(|x| x * x).sum::<f64>());
        // balance::ess sums with compensation (as R's long-double sums); a plain sum can differ in the last
        // digits when weights are fractional (ratio > 1 or replacement).
        assert!((ess - s * s / s2).abs() <= 1e-12 * ess, "ess {ess} vs {}", s * s / s2);
    }
}

#[test]
fn default_spec_equals_direct_path_and_matchit_snapshot() {
    let d = data();
    let r = match_units(&MatchSpec::new(FORMULA), &d.table, &d.treat, &d.ids).unwrap();
    let fit = direct_fit(Link::Logit);
    let direct = nearest(&Problem::new(&fit.fitted, &d.treat), &NearestOptions::default()).unwrap();
    assert_eq!(sets_by_id(&r), direct_sets(&direct, &d.ids));
    let p = r.propensity.as_ref().unwrap();
    assert_eq!(p.fit, fit);
    assert_eq!(p.link_name, Link::Logit);
    assert_eq!(r.distance_label, "Propensity score");
    assert_eq!(r.units.iter().map(|u| u.weight).collect::<Vec<_>>(), direct.weights);
    assert_eq!(r.units.iter().map(|u| u.distance).collect::<Vec<_>>(), fit.fitted);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    check_sizes(&r, &d.treat);
    assert_eq!((r.n.matched_treated, r.n.matched_control), (185, 185));
    assert_eq!(r.balance.before[0].term, "distance");
    assert_eq!(r.balance.before.len(), r.balance.after.len());
    assert_eq!(
        r.balance.before.iter().map(|b| b.term.as_str()).collect::<Vec<_>>()[1..4],
        ["age", "educ", "raceblack"]
    );

    // MatchIt 4.7's own snapshot of this case (from R's scores; ours agree with them to 1e-8).
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/nearest_scores.json")).unwrap(),
    )
    .unwrap();
    let snap = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "baseline: PS vector, m.order='largest' (default)")
        .unwrap();
    let strings = |x: &Value| x.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let want: Vec<(String, Vec<String>)> =
        strings(&snap["rownames"]).into_iter().zip(strings(&snap["value"])).map(|(t, c)| (t, vec![c])).collect();
    assert_eq!(sets_by_id(&r), want);
}

#[test]
fn options_reach_the_methods_as_on_the_direct_path() {
    let d = data();
    let mut spec = MatchSpec::new(FORMULA);
    spec.link = DistanceLink::LinearProbit;
    spec.ratio = 2;
    spec.caliper = Some(0.25);
    spec.exact = vec!["married".into()];
    spec.order = Order::Smallest;
    spec.discard = CommonSupport::Both;
    let r = match_units(&spec, &d.table, &d.treat, &d.ids).unwrap();
    let fit = direct_fit(Link::Probit);
    let exact: Vec<u32> = load().married.iter().map(|&m| m as u32).collect();
    let mut problem = Problem::new(&fit.linear_predictor, &d.treat);
    problem.exact = Some(&exact);
    let opts = NearestOptions {
        ratio: 2,
        order: Order::Smallest,
        caliper: Some(Caliper::Sd(0.25)),
        discard: Discard::Both,
        ..NearestOptions::default()
    };
    let direct = nearest(&problem, &opts).unwrap();
    assert_eq!(sets_by_id(&r), direct_sets(&direct, &d.ids));
    assert_eq!(r.distance_label, "Linear predictor of the propensity model");
    assert_eq!(r.propensity.as_ref().unwrap().link_name, Link::Probit);
    assert_eq!(r.units.iter().map(|u| u.discarded).collect::<Vec<_>>(), direct.discarded);
    check_sizes(&r, &d.treat);

    // With replacement: fractional control weights, no subclasses.
    let mut spec = MatchSpec::new(FORMULA);
    spec.ratio = 3;
    spec.replace = true;
    let r = match_units(&spec, &d.table, &d.treat, &d.ids).unwrap();
    let fit = direct_fit(Link::Logit);
    let direct = nearest(
        &Problem::new(&fit.fitted, &d.treat),
        &NearestOptions { ratio: 3, replace: true, ..Default::default() },
    )
    .unwrap();
    assert_eq!(sets_by_id(&r), direct_sets(&direct, &d.ids));
    assert!(r.units.iter().all(|u| u.subclass.is_none()));
    check_sizes(&r, &d.treat);

    // Optimal 1:1 matching.
    let mut spec = MatchSpec::new(FORMULA);
    spec.method = Method::Optimal;
    let r = match_units(&spec, &d.table, &d.treat, &d.ids).unwrap();
    let direct = optimal(&Problem::new(&fit.fitted, &d.treat), &OptimalOptions::pair()).unwrap();
    assert_eq!(sets_by_id(&r), direct_sets(&direct, &d.ids));
    check_sizes(&r, &d.treat);
}

#[test]
fn distance_column_and_missing_values() {
    let mut d = data();
    let fit = direct_fit(Link::Logit);
    let mut score = fit.fitted.clone();
    score[3] = f64::NAN; // a control? either way the unit is left out
    d.table.push("score", Column::Numeric(score)).unwrap();
    let mut spec = MatchSpec::new(FORMULA);
    spec.distance_column = Some("score".into());
    let r = match_units(&spec, &d.table, &d.treat, &d.ids).unwrap();
    assert!(r.propensity.is_none());
    assert_eq!(r.distance_label, "Distance (`score`)");
    assert_eq!(r.notes, ["1 of 614 units have a missing value in a matching variable and were left out"]);
    assert_eq!(r.units.len(), 613);
    assert!(r.units.iter().all(|u| *u.id != *d.ids[3]));
    check_sizes(&r, &d.treat.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, t)| *t).collect::<Vec<_>>());
}

#[test]
fn controls_short_note() {
    let d = data();
    let mut spec = MatchSpec::new(FORMULA);
    spec.ratio = 3;
    spec.exact = vec!["race".into()];
    let r = match_units(&spec, &d.table, &d.treat, &d.ids).unwrap();
    assert_eq!(r.notes, ["fewer controls were available than 3 per treated unit; some got fewer"]);
}

#[test]
fn errors_name_what_to_change() {
    let d = data();
    let run = |spec: &MatchSpec| match_units(spec, &d.table, &d.treat, &d.ids).unwrap_err();

    let mut spec = MatchSpec::new(FORMULA);
    spec.exact = vec!["region".into()];
    let e = run(&spec);
    assert!(
        matches!(&e, MatchError::MissingColumn { field: SpecField::Exact, column, .. } if column == "region"),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("exact: no column named `region` (columns are: treat, age,"), "{e}");
    assert_eq!(e.field(), Some(SpecField::Exact));
    assert!(!e.is_internal());

    let e = run(&MatchSpec::new("treat ~ age + region"));
    assert!(matches!(&e, MatchError::MissingColumn { field: SpecField::Formula, column, .. } if column == "region"));

    let mut spec = MatchSpec::new(FORMULA);
    spec.ratio = 0;
    let e = run(&spec);
    assert_eq!(e, MatchError::InvalidRatio { ratio: 0 });
    assert_eq!(e.to_string(), "ratio must be at least 1 (controls per treated unit), not 0");

    let mut spec = MatchSpec::new(FORMULA);
    spec.mahvars = vec!["age".into(), "race".into()];
    let e = run(&spec);
    assert_eq!(
        e,
        MatchError::NotNumeric { field: SpecField::Mahvars, column: "race".into(), row: 1, value: "black".into() }
    );
    assert_eq!(
        e.to_string(),
        "mahvars: column `race` must be numeric but holds text (first text value `black` in row 1)"
    );

    for bad in [0.0, -0.5, f64::NAN, f64::INFINITY] {
        let mut spec = MatchSpec::new(FORMULA);
        spec.caliper = Some(bad);
        assert!(matches!(run(&spec), MatchError::InvalidCaliper { .. }), "{bad}");
    }

    let mut spec = MatchSpec::new(FORMULA);
    spec.mahvars = vec!["age".into()];
    spec.method = Method::Optimal;
    assert!(matches!(run(&spec), MatchError::Unsupported { field: SpecField::Mahvars, .. }));

    let e = run(&MatchSpec::new("treat ~ age + (1 | race)"));
    assert!(matches!(e, MatchError::Formula { .. }), "{e:?}");

    // No exact cell holds both groups: the method's error, pointing at `exact`.
    let mut spec = MatchSpec::new(FORMULA);
    spec.distance_column = Some("age".into());
    spec.exact = vec!["treat".into()];
    let e = run(&spec);
    assert!(matches!(e, MatchError::Matching { field: Some(SpecField::Exact), .. }), "{e:?}");
    assert!(e.to_string().starts_with("matching: "), "{e}");

    let e = match_units(&MatchSpec::new(FORMULA), &d.table, &d.treat[1..], &d.ids).unwrap_err();
    assert_eq!(e, MatchError::Length { what: "treat", len: 613, rows: 614 });

    // The same checks without computing anything.
    let mut spec = MatchSpec::new(FORMULA);
    spec.exact = vec!["region".into()];
    assert!(matches!(spec.validate(&d.table), Err(MatchError::MissingColumn { .. })));
    assert_eq!(MatchSpec::new(FORMULA).validate(&d.table), Ok(()));
}

#[test]
fn spec_serde_format() {
    let spec: MatchSpec = serde_json::from_str(r#"{"formula": "t ~ x"}"#).unwrap();
    assert_eq!(spec, MatchSpec::new("t ~ x"));
    assert_eq!((spec.ratio, spec.seed, spec.method, spec.order), (1, 1, Method::Nearest, Order::Largest));
    let spec: MatchSpec = serde_json::from_str(
        r#"{"formula": "t ~ x", "method": "optimal", "link": "linear-logit", "distance_column": "d", "ratio": 2,
            "replace": true, "order": "closest", "caliper": 0.2, "exact": ["a"], "mahvars": ["b", "c"],
            "discard": "both", "seed": 7}"#,
    )
    .unwrap();
    assert_eq!(spec.link, DistanceLink::LinearLogit);
    assert_eq!(spec.discard, CommonSupport::Both);
    assert_eq!(spec.order, Order::Closest);
    assert_eq!(
        serde_json::to_string(&spec).unwrap(),
        r#"{"formula":"t ~ x","method":"optimal","link":"linear-logit","distance_column":"d","ratio":2,"replace":true,"order":"closest","caliper":0.2,"exact":["a"],"mahvars":["b","c"],"discard":"both","seed":7}"#
    );
    for s in ["linear-probit", "probit", "logit"] {
        let spec: MatchSpec = serde_json::from_str(&format!(r#"{{"formula": "t ~ x", "link": "{s}"}}"#)).unwrap();
        assert_eq!(serde_json::to_value(spec.link).unwrap(), s);
    }
    for s in ["largest", "smallest", "random", "data"] {
        let spec: MatchSpec = serde_json::from_str(&format!(r#"{{"formula": "t ~ x", "order": "{s}"}}"#)).unwrap();
        assert_eq!(serde_json::to_value(spec.order).unwrap(), s);
    }
    assert!(serde_json::from_str::<MatchSpec>(r#"{"formula": "t ~ x", "ratoi": 2}"#).is_err());
    assert!(serde_json::from_str::<MatchSpec>(r#"{"formula": "t ~ x", "method": "full"}"#).is_err());
}

#[test]
fn result_round_trips_through_json_in_file_order() {
    let d = data();
    for spec in [
        MatchSpec::new(FORMULA),
        MatchSpec { ratio: 2, replace: true, exact: vec!["race".into()], ..MatchSpec::new(FORMULA) },
    ] {
        let r = match_units(&spec, &d.table, &d.treat, &d.ids).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        let back: MatchResult = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(back, r);
        let v: Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["n", "propensity", "distance_label", "matches", "unmatched_treated", "balance", "notes", "units"]
        );
        let p: Vec<&str> = v["propensity"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(p[..4], ["formula", "link_name", "link", "terms"]);
        assert_eq!(v["propensity"]["link_name"], "logit");
        let n: Vec<&str> = v["n"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(n[0], "all_treated");
        assert_eq!(n[9], "ess_control");
    }
    // A NaN (MatchIt's NA) is written as null and read back as NaN.
    let row: psmeval_matching::balance::BalanceRow = serde_json::from_str(
        r#"{"term":"x","mean_treated":1.0,"mean_control":2.0,"smd":null,"var_ratio":null,"ecdf_mean":null,
            "ecdf_max":null,"binary":false}"#,
    )
    .unwrap();
    assert!(row.ecdf_mean.is_nan() && row.smd.is_none());
}
