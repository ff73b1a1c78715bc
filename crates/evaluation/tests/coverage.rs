//! A small coverage check of the default inference (the full check, 500+ populations of the Maths Teacher
//! Exchange design, is `cargo run --release -p psmeval-evaluation --example coverage`; results in
//! benches/README.md). 60 populations of 160 schools (10 lead schools matched 1:3) with cohort shocks
//! (SD 0.10) and school slopes, no programme effect: the CR2 95% CI of the pooled KS2 effect must cover 0 in
//! at least 85% of them (nominal 95%; Monte Carlo SE ≈ 2.8 points, so the band is ~3.5 SE wide).

use psmeval_evaluation::Study;
use psmeval_evaluation::coverage::{coverage, run_replicates};
use psmeval_synth::SimConfig;

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

#[test]
fn cr2_intervals_cover_at_about_their_nominal_rate() {
    let base = SimConfig {
        schools: 160,
        leads: 10,
        effect: 0.0,
        cohort_sd: 0.10,
        mean_cohort: 20.0,
        seed: 7_000,
        ..SimConfig::small()
    };
    let reps = run_replicates(&base, &Study::from_toml(STUDY).unwrap(), 60);
    assert!(reps.len() >= 55, "only {} of 60 replicates could be analysed", reps.len());
    assert!(reps.iter().all(|r| r.pooled.inference == "CR2" && r.pooled.df < 60.0));
    let cr2 = coverage(&reps, 0.0, false);
    let model = coverage(&reps, 0.0, true);
    eprintln!("CR2: {cr2:?}\nmodel-based: {model:?}");
    assert!(cr2.coverage >= 0.85, "CR2 coverage {:.3} (model-based {:.3})", cr2.coverage, model.coverage);
    assert!(cr2.rejection_rate <= 0.15);
}
