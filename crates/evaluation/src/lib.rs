//! The evaluation pipeline of psmeval: a study file's schema ([`Study`]) is validated into a [`Plan`]
//! (formulas parsed once, every problem naming its field), and [`evaluate`] runs it on the school and pupil
//! tables — propensity scores and matching, one analysis sample per outcome × subgroup, multilevel
//! difference-in-differences impact models, programme effects and effect sizes — returning an
//! [`Evaluation`]: plain data that serializes to `results.json` and holds everything a report shows.
//!
//! The crate computes only: no files, no printing, no plots. Progress is reported through a callback.
//!
//! ```
//! use psmeval_evaluation::{Plan, Study, evaluate, population_tables};
//! use psmeval_synth::{SimConfig, simulate};
//!
//! // A small simulated population: 150 schools, 10 of them lead schools, a true effect of 0.3 SD.
//! let pop = simulate(&SimConfig { schools: 150, leads: 10, effect: 0.3, ..SimConfig::small() }).unwrap();
//! let (schools, pupils) = population_tables(&pop).unwrap();
//! let study = Study::from_toml(r#"
//!     [data]
//!     schools = "schools.csv"
//!     pupils = "pupils.csv"
//!     [matching]
//!     formula = "lead ~ pct_fsm + prior_attainment"
//!     ratio = 3
//!     [years]
//!     first = 2013
//!     last = 2017
//!     programme_start = 2015
//!     [model]
//!     covariates = ["fsm", "prior"]
//!     [[outcomes]]
//!     name = "KS2 maths"
//!     column = "maths"
//!     filter = { key_stage = 2 }
//!     standardize_within_year = true
//! "#).unwrap();
//! let plan = Plan::new(study).unwrap();
//! let ev = evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).unwrap();
//! assert_eq!(ev.matching.n.matched_treated, 10);
//! let pooled = ev.outcomes[0].effects.iter().find(|e| e.year.is_pooled()).unwrap();
//! assert!(pooled.ci_low < pooled.ci_high);
//! // Everything round-trips through JSON, so a report can be rebuilt from results.json.
//! let json = serde_json::to_string(&ev).unwrap();
//! assert_eq!(serde_json::from_str::<psmeval_evaluation::Evaluation>(&json).unwrap().outcomes.len(), 1);
//! ```

#![deny(missing_docs)]

pub mod design;
pub mod effects;
mod evaluation;
mod float;
pub mod gap_closing;
pub mod gaps;
pub mod gcomp;
pub mod headline;
pub mod impact;
pub mod mdes;
pub mod model;
pub mod plan;
pub mod power;
pub mod record;
pub mod sample;
pub mod sensitivity;
pub mod study;
mod synthetic;
pub mod trend;
pub mod value_added;

pub use evaluation::{Evaluation, EvaluationError, InputFile, OutcomeResult, Progress, evaluate};
pub use plan::{Plan, PlanError, Problem};
pub use record::ModelRecord;
pub use study::{Family, Study, file_stem};
pub use synthetic::population_tables;
