//! The default impact model's cohort term: linear and logistic models carry `(1 | school_id:year)` unless the
//! study turns it off, and its variance is estimated on data simulated with cohort shocks.

use psmeval_evaluation::{Evaluation, Plan, Study, evaluate, population_tables};
use psmeval_synth::{SimConfig, simulate};

const STUDY: &str = r#"
[data]
schools = "schools.csv"
pupils = "pupils.csv"
[matching]
formula = "lead ~ pct_fsm + prior_attainment + urban"
ratio = 3
[years]
first = 2013
last = 2017
programme_start = 2015
[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = { key_stage = 2 }
standardize_within_year = true
[[outcomes]]
name = "KS2 expected"
column = "expected"
filter = { key_stage = 2 }
family = "binomial"
"#;

fn run(model: &str) -> Evaluation {
    let config = SimConfig { schools: 160, leads: 10, cohort_sd: 0.3, seed: 11, ..SimConfig::small() };
    let pop = simulate(&config).unwrap();
    let (schools, pupils) = population_tables(&pop).unwrap();
    let plan = Plan::new(Study::from_toml(&format!("{STUDY}\n[model]\n{model}\n")).unwrap()).unwrap();
    evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).unwrap()
}

#[test]
fn linear_and_logistic_models_carry_a_cohort_term_by_default() {
    let ev = run("");
    let maths = &ev.outcomes[0];
    assert!(maths.formula.ends_with("+ (1 | school_id) + (1 | school_id:year)"), "{}", maths.formula);
    let model = maths.model.as_ref().expect("fitted");
    let cohort =
        model.variance_components().iter().find(|v| v.group == "school_id:year").expect("a cohort variance component");
    assert!(cohort.variance > 0.0, "cohort shocks of SD 0.3 were simulated: {}", cohort.variance);
    // The logistic model carries it too (a GLMM with two nested terms).
    let expected = &ev.outcomes[1];
    assert!(expected.formula.ends_with("+ (1 | school_id) + (1 | school_id:year)"), "{}", expected.formula);
    let logistic = expected.model.as_ref().expect("fitted");
    assert!(logistic.variance_components().iter().any(|v| v.group == "school_id:year"));
    assert!(logistic.converged());

    let off = run("cohort_random_effect = false");
    let maths_off = &off.outcomes[0];
    assert!(maths_off.formula.ends_with("+ (1 | school_id)"), "{}", maths_off.formula);
    assert!(off.outcomes[1].formula.ends_with("+ (1 | school_id)"), "{}", off.outcomes[1].formula);
    // The cohort variance moves out of the school and pupil components; the estimate changes, not its sign.
    let pooled = |e: &Evaluation| e.outcomes[0].effects.iter().find(|x| x.year.is_pooled()).unwrap().estimate;
    assert!((pooled(&ev) - pooled(&off)).abs() < 0.2);
}
