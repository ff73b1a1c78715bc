//! The built-in example of `psmeval evaluate --example`: a simulated population with a known effect and a
//! Maths-Teacher-Exchange-style study file describing its evaluation (47 lead schools, 1:20 nearest-neighbour
//! matching on school characteristics, KS1 and KS2 maths 2012/13–2016/17 standardized within year, FSM
//! pupils as a subgroup).

use std::path::{Path, PathBuf};

use anyhow::Result;
use psmeval_synth::{Population, SimConfig};
use sha2::{Digest, Sha256};

use crate::population::population_outputs;
use crate::table::Format;

/// The study file written next to the example data (paths relative to it).
pub fn study_text(cfg: &SimConfig) -> String {
    format!(
        r#"# psmeval example study: a Maths-Teacher-Exchange-style evaluation of simulated data.
# The simulation's true programme effect is {effect} pupil-level SD from {start_label} on (see data/truth.json).
title = "Example evaluation: lead schools vs matched contrast schools (simulated data)"

[data]
schools = "data/schools.csv"
pupils = "data/pupils.csv"
school_id = "school_id"
treatment = "lead"
year = "year"

[matching]
formula = "lead ~ pct_fsm + pct_eal + pct_sen + idaci + prior_attainment + urban + n_pupils + factor(ofsted)"
method = "nearest"
link = "logit"
ratio = 20
replace = false
order = "largest"
discard = "none"
seed = {seed}

[years]
first = {first}
last = {last}
programme_start = {start}

[model]
covariates = ["female", "fsm", "eal", "sen", "prior"]
random_slope_year = false
cohort_random_effect = true

[[outcomes]]
name = "KS1 maths"
column = "maths"
filter = {{ key_stage = 1 }}
standardize_within_year = true

[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = {{ key_stage = 2 }}
standardize_within_year = true
primary = true

[[outcomes]]
name = "KS2 expected standard"
column = "expected"
filter = {{ key_stage = 2 }}
family = "binomial"

[[subgroups]]
name = "FSM pupils"
filter = {{ fsm = 1 }}

[effect_size]
definition = "eef"
"#,
        effect = cfg.effect,
        start_label = psmeval_report::plot::year_label(i64::from(cfg.programme_start)),
        seed = cfg.seed,
        first = cfg.first_year,
        last = cfg.last_year,
        start = cfg.programme_start,
    )
}

/// The study file of `psmeval power --example`: the example's analysis, simulated with `schools` schools (47
/// of them lead schools) per population.
pub fn power_study_text(schools: usize) -> String {
    let body: String = study_text(&SimConfig::default()).lines().skip(2).map(|l| format!("{l}\n")).collect();
    format!(
        "# psmeval example power study: the example evaluation's design and analysis, simulated by `psmeval power`.\n\
         # Data paths are not read: every replicate simulates its own population.\n\
         {body}\n[simulation]\nfrom = \"defaults\"\nschools = {schools}\nleads = 47\n"
    )
}

/// The simulation configuration of `psmeval evaluate --example`.
pub fn config(a: &crate::args::EvaluateArgs) -> SimConfig {
    let base = SimConfig::default();
    SimConfig { schools: a.schools.unwrap_or(base.schools), effect: a.effect, seed: a.seed, ..base }
}

/// Writes the example population under `dir/data/` (as `psmeval simulate` writes it, with `truth.json`) and
/// the study file `dir/study.toml`, all or nothing.
pub fn write_example(dir: &Path, cfg: &SimConfig, pop: Population) -> Result<ExampleFiles> {
    let mut outputs = population_outputs(pop, &dir.join("data"), Format::Csv)?;
    let digest = |name: &str| outputs.bytes(&dir.join("data").join(name)).map(sha256_hex).unwrap_or_default();
    let (schools_sha256, pupils_sha256) = (digest("schools.csv"), digest("pupils.csv"));
    let study = dir.join("study.toml");
    outputs.add(&study, study_text(cfg));
    outputs.commit()?;
    Ok(ExampleFiles { study, schools_sha256, pupils_sha256 })
}

/// What [`write_example`] wrote: the study file's path and the data files' SHA-256 digests.
#[derive(Debug)]
pub struct ExampleFiles {
    pub study: PathBuf,
    pub schools_sha256: String,
    pub pupils_sha256: String,
}

/// The SHA-256 digest of `bytes` in lower-case hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmeval_evaluation::{Plan, Study};

    #[test]
    fn example_study_is_valid() {
        let s = Study::from_toml(&study_text(&SimConfig::small())).unwrap();
        assert_eq!(s.matching.ratio, 20);
        assert_eq!(s.outcomes.len(), 3);
        Plan::new(s).unwrap();
    }

    /// `data/example-study.toml` documents the example; it must stay what `--example` writes.
    #[test]
    fn shipped_example_study_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/example-study.toml");
        let shipped = std::fs::read_to_string(&path).unwrap();
        let body: String = shipped.lines().skip(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(body, study_text(&SimConfig::default()).replace("\"data/", "\"synthetic/"));
        Plan::new(Study::from_toml(&shipped).unwrap()).unwrap();
    }
}
