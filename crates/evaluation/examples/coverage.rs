//! The coverage check of issue 11: many populations of the Maths Teacher Exchange design (47 lead schools
//! matched 1:20, cohort SD 0.10, school slope SD 0.04) with no programme effect, each evaluated as
//! `psmeval evaluate` does; prints the coverage of the pooled effect's 95% CI (KS2 maths, standardized within
//! year) and the rejection rate, for the default CR2 inference and the model-based one, as JSON.
//!
//! `cargo run --release -p psmeval-evaluation --example coverage -- [REPLICATES] [SCHOOLS] [--replace]`
//! (defaults 500 and 3000).

use psmeval_evaluation::Study;
use psmeval_evaluation::coverage::{coverage, run_replicates};
use psmeval_synth::SimConfig;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let replicates: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let schools: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    let replace = args.iter().any(|a| a == "--replace");
    let study = format!(
        r#"
[data]
schools = "schools.csv"
pupils = "pupils.csv"
[matching]
formula = "lead ~ pct_fsm + pct_eal + pct_sen + idaci + prior_attainment + urban + n_pupils + factor(ofsted)"
ratio = 20
replace = {replace}
[years]
first = 2013
last = 2017
programme_start = 2015
[model]
covariates = ["female", "fsm", "eal", "sen", "prior"]
[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = {{ key_stage = 2 }}
standardize_within_year = true
"#
    );
    let base = SimConfig { schools, leads: 47, effect: 0.0, cohort_sd: 0.10, seed: 1, ..SimConfig::default() };
    let start = std::time::Instant::now();
    let reps = run_replicates(&base, &Study::from_toml(&study).expect("valid study"), replicates);
    let out = serde_json::json!({
        "replicates": replicates,
        "analysed": reps.len(),
        "schools": schools,
        "replace": replace,
        "seconds": start.elapsed().as_secs_f64(),
        "cr2": coverage(&reps, 0.0, false),
        "model_based": coverage(&reps, 0.0, true),
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("serializable"));
}
