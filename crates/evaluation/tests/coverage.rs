//! A small coverage check of the default inference, run by the power module (the full check, 500+
//! populations of the Maths Teacher Exchange design, is `psmeval power`; results in benches/README.md).
//! 60 populations of 160 schools (10 lead schools matched 1:3) with cohort shocks (SD 0.10) and school slopes,
//! no programme effect: the CR2 95% CI of the pooled KS2 effect must cover 0 in at least 85% of them (nominal
//! 95%; Monte Carlo SE ≈ 2.8 points, so the band is ~3.5 SE wide). The same run, split into shards and
//! merged, must give the same summary to the bit.

use psmeval_evaluation::power::{Design, PowerSettings, collect, run_shard, summarize};
use psmeval_evaluation::{Plan, Study};

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
[simulation]
from = "defaults"
schools = 160
leads = 10
cohort_size = 20
cohort_sd = 0.10
"#;

fn settings(plan: &Plan, replicates: u64, effects: Vec<f64>) -> PowerSettings {
    PowerSettings { replicates, effects, seed: 7_000, design: Design::from_study(plan) }
}

#[test]
fn cr2_intervals_cover_at_about_their_nominal_rate() {
    let plan = Plan::new(Study::from_toml(STUDY).unwrap()).unwrap();
    let run = run_shard(&plan, "test", &settings(&plan, 60, vec![0.0]), 0, 1, &|| {}).unwrap();
    let res = summarize(&run);
    let p = &res.analyses[0].effects[0];
    eprintln!("{p:?}");
    assert!(p.replicates >= 55, "only {} of 60 replicates could be analysed", p.replicates);
    assert_eq!(p.mean_truth, Some(0.0));
    let (cover, model) = (p.coverage.unwrap(), p.model_based.as_ref().unwrap());
    assert!(cover >= 0.85, "CR2 coverage {cover:.3} (model-based {:?})", model.coverage);
    assert!(p.power <= 0.15, "rejection rate {}", p.power);
    assert!(model.mean_se < p.mean_se, "model-based SEs ignore cohort variation and should be smaller");
}

#[test]
fn power_grows_with_the_effect_and_shards_merge_to_the_same_bits() {
    let plan = Plan::new(Study::from_toml(STUDY).unwrap()).unwrap();
    let s = settings(&plan, 6, vec![0.0, 0.5]);
    let whole = run_shard(&plan, "test", &s, 0, 1, &|| {}).unwrap();
    let parts: Vec<_> =
        (0..3).rev().map(|i| (format!("shard {i}"), run_shard(&plan, "test", &s, i, 3, &|| {}).unwrap())).collect();
    let merged = collect(parts.clone()).unwrap();
    let a = serde_json::to_string(&summarize(&whole)).unwrap();
    let b = serde_json::to_string(&summarize(&merged)).unwrap();
    assert_eq!(a, b);
    let res = summarize(&whole);
    let pts = &res.analyses[0].effects;
    assert!(pts[1].power > pts[0].power, "{pts:?}");
    let truth = pts[1].mean_truth.unwrap();
    assert!(truth > 0.2 && truth < 0.5, "the analysed-scale truth of a 0.5 latent effect is attenuated: {truth}");
    // A missing or duplicated shard is refused.
    let err = collect(parts[..2].to_vec()).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    let mut dup = parts.clone();
    dup.push(("again".into(), parts[0].1.clone()));
    assert!(collect(dup).unwrap_err().to_string().contains("also in"));
    let mut other = parts.clone();
    other[1].1.settings.seed = 1;
    assert!(collect(other).unwrap_err().to_string().contains("seed"));
}
