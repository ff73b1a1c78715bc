//! The study's `[inference]` choices on one small simulated population: CR2 by school (the default), CR2 by
//! matched set, the wild cluster bootstrap and the model's own variance each label their effects, keep the
//! model-based test beside the robust one, and give df on the scale of clusters rather than pupils.

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
[model]
covariates = ["fsm", "prior"]
[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = { key_stage = 2 }
standardize_within_year = true
"#;

fn run(inference: &str) -> Evaluation {
    let pop =
        simulate(&SimConfig { schools: 160, leads: 10, effect: 0.3, mean_cohort: 20.0, seed: 3, ..SimConfig::small() })
            .unwrap();
    let (schools, pupils) = population_tables(&pop).unwrap();
    let plan = Plan::new(Study::from_toml(&format!("{STUDY}\n[inference]\n{inference}\n")).unwrap()).unwrap();
    evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).unwrap()
}

#[test]
fn every_inference_method_labels_its_effects() {
    let cr2 = run("method = \"cr2\"");
    let o = &cr2.outcomes[0];
    let pooled = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(pooled.inference, "CR2");
    assert_eq!(o.inference.as_ref().unwrap().clusters, Some(o.n_schools));
    assert!(pooled.df < 45.0, "CR2 df on the scale of 40 schools: {}", pooled.df);
    let model = pooled.model_based.as_ref().unwrap();
    assert!(model.df > pooled.df);

    let sets = run("cluster = \"matched_set\"");
    let o = &sets.outcomes[0];
    assert_eq!(o.inference.as_ref().unwrap().clusters, Some(10), "10 matched sets");
    let p_sets = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert!(p_sets.df < 10.0, "df on the scale of 10 sets: {}", p_sets.df);
    assert_eq!(p_sets.estimate, pooled.estimate, "the clustering changes the SE, not the estimate");

    let wild = run("method = \"wild\"\nbootstrap_draws = 199\nseed = 5");
    let o = &wild.outcomes[0];
    let w = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(w.inference, "wild bootstrap");
    assert!(w.ci_low < w.estimate && w.estimate < w.ci_high);
    // The bootstrap-t and the CR2 t test agree closely here (40 schools, 10 treated).
    assert!((w.p_value - pooled.p_value).abs() < 0.15, "wild p {} vs CR2 p {}", w.p_value, pooled.p_value);
    let (ww, wc) = (w.ci_high - w.ci_low, pooled.ci_high - pooled.ci_low);
    assert!((ww / wc - 1.0).abs() < 0.3, "wild CI width {ww} vs CR2 {wc}");
    assert_eq!(run("method = \"wild\"\nbootstrap_draws = 199\nseed = 5").outcomes[0].effects, o.effects);

    let own = run("method = \"model\"");
    let m = own.outcomes[0].effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(m.inference, "model");
    assert!(m.model_based.is_none() && m.df > pooled.df);
    assert!(
        own.outcomes[0]
            .model
            .as_ref()
            .map(|r| matches!(r, psmeval_evaluation::ModelRecord::Linear(l) if l.robust.is_none()))
            .unwrap()
    );
}

#[test]
fn too_few_bootstrap_draws_are_refused_by_the_plan() {
    let e = Plan::new(
        Study::from_toml(&format!("{STUDY}\n[inference]\nmethod = \"wild\"\nbootstrap_draws = 20\n")).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("inference.bootstrap_draws"), "{e}");
}
