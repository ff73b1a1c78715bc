//! Reference-value tests of models with several random-effects terms against lme4 1.1 (lmer) and lmerTest:
//! three nested designs (pupils in schools in authorities, Chem97; a three-level growth model with random
//! slopes in both terms, egsingle; pupils in school-years in schools with a random slope on year, simulated)
//! and two crossed ones (InstEval's three crossed terms; a primary × secondary school cross-classification
//! with 51,000 random-effect levels). Data and expected values were written by
//! `tests/reference/lme4_multiterm_reference.R` (run from `crates/multilevel`); CI needs no R.
//!
//! Models are built from the CSV through psmeval's own formula parser and model frame, so the interaction
//! grouping factors (`lea:school`) are the ones `psmeval lmm` uses. Tolerances are `common::check_lmm`'s:
//! logLik 1e-6 relative, fixed effects 1e-5, SEs and variance components 1e-4, Satterthwaite df 1e-3.

use psmeval_frame::{build_model_frame, parse_formula};
use psmeval_multilevel::{LmmFit, LmmOptions, MixedModel, fit_lmm};
use serde_json::Value;

mod common;
use common::{WORST, check_lmm, read_table};

fn reference() -> Value {
    let path = format!("{}/tests/reference/lme4_multiterm_reference.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference json")).expect("valid json")
}

fn fit(data: &str, formula: &str, reml: bool) -> LmmFit {
    let table = read_table(data);
    let frame = build_model_frame(&parse_formula(formula).unwrap(), &table).unwrap();
    let fit = fit_lmm(&frame, &LmmOptions { reml, ..LmmOptions::default() }).unwrap_or_else(|e| panic!("{data}: {e}"));
    assert!(fit.converged(), "{data}: {:?}", fit.optimizer());
    fit
}

fn run(name: &str, formula: &str, remls: &[bool]) {
    let r = reference();
    for &reml in remls {
        let fit = fit(name, formula, reml);
        check_lmm(name, reml, &fit, &r);
    }
    WORST.with(|w| eprintln!("{name}: worst errors against lme4/lmerTest: {:#?}", w.borrow()));
}

#[test]
fn nested_pupils_in_schools_in_authorities_chem97() {
    run("chem97", "score ~ gcsecnt + (1 | lea) + (1 | lea:school)", &[true, false]);
}

#[test]
fn nested_three_level_growth_model_egsingle() {
    run("egsingle", "math ~ year + (year | schoolid) + (year | childid)", &[true]);
}

#[test]
fn nested_cohorts_with_a_random_slope_on_year() {
    run("cohorts", "y ~ post * treated + prior + (1 + yr | school) + (1 | school:year)", &[true, false]);
}

#[test]
fn crossed_three_terms_insteval() {
    run("insteval", "y ~ service1 + (1 | s) + (1 | d) + (1 | dept:service)", &[true]);
}

#[test]
fn crossed_primary_by_secondary_51000_levels() {
    let r = reference();
    let fit = fit("feeder", "y ~ x + (1 | primary) + (1 | secondary)", true);
    assert!(fit.ranef().iter().map(|t| t.levels.len()).sum::<usize>() > 50_000);
    check_lmm("feeder", true, &fit, &r);
}

/// Bad multi-term models are named errors: a nested term over a constant column (one level), a term with as
/// many levels as observations, a grouping column that is not in the data.
#[test]
fn bad_nested_terms_are_named_errors() {
    use psmeval_frame::Column;
    use psmeval_multilevel::MixedModelError;
    let mut table = read_table("chem97");
    let n = table.n_rows();
    table.push("nation", Column::Text(vec![Some("England".into()); n])).unwrap();
    let frame_of = |f: &str| build_model_frame(&parse_formula(f).unwrap(), &table);
    let frame = frame_of("score ~ gcsecnt + (1 | lea) + (1 | nation)").unwrap();
    let err = fit_lmm(&frame, &LmmOptions::default()).unwrap_err();
    assert_eq!(err, MixedModelError::OneLevel { group: "nation".into(), levels: 1 });
    assert!(err.to_string().contains("`nation` has 1 level"), "{err}");
    table.push("pupil", Column::Numeric((0..n).map(|i| i as f64).collect())).unwrap();
    let frame =
        build_model_frame(&parse_formula("score ~ gcsecnt + (1 | lea) + (1 | lea:pupil)").unwrap(), &table).unwrap();
    assert!(matches!(
        fit_lmm(&frame, &LmmOptions::default()),
        Err(MixedModelError::TooManyLevels { ref group, .. }) if group == "lea:pupil"
    ));
    let missing = build_model_frame(&parse_formula("score ~ gcsecnt + (1 | lea/classroom)").unwrap(), &table);
    let err = missing.unwrap_err();
    assert!(err.to_string().contains("classroom"), "{err}");
}
