//! Coverage of the evaluation's confidence intervals by simulation: many populations drawn with a known
//! effect, each evaluated exactly as `evaluate` does (in memory), and the share of 95% intervals of the
//! pooled effect that cover the truth, for the default inference (CR2) and for the model-based one.
//!
//! The caller gives the truth to compare with. The simulated effect is on the latent scale while the
//! analysis standardizes observed scores within year (banded or clamped scores attenuate it), so the exact
//! estimand of a non-zero effect is not the simulated `D`; the coverage checks therefore simulate no effect,
//! where the truth is 0 on every scale.

use rayon::prelude::*;
use serde::Serialize;

use crate::effects::Effect;
use crate::{Plan, Study, evaluate, population_tables};
use psmeval_synth::{SimConfig, simulate};

/// What one replicate gave for the pooled effect of the first outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replicate {
    /// Replicate index.
    pub index: u64,
    /// The default (study's) inference's pooled effect.
    pub pooled: Effect,
}

/// Coverage of one inference over the replicates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// Replicates analysed.
    pub replicates: usize,
    /// Share of 95% CIs covering `truth`.
    pub coverage: f64,
    /// Its Monte Carlo SE.
    pub coverage_mcse: f64,
    /// Mean estimate minus truth.
    pub bias: f64,
    /// SD of the estimates over replicates.
    pub empirical_se: f64,
    /// Mean reported SE.
    pub mean_se: f64,
    /// Share of p < 0.05.
    pub rejection_rate: f64,
}

/// Coverage of `truth` by the replicates' pooled-effect intervals: the default ones, or the model-based ones
/// kept beside them when `model_based`.
pub fn coverage(reps: &[Replicate], truth: f64, model_based: bool) -> Coverage {
    let rows: Vec<(f64, f64, f64, f64, f64)> = reps
        .iter()
        .map(|r| {
            let e = &r.pooled;
            match (model_based, &e.model_based) {
                (true, Some(m)) => (e.estimate, m.std_error, m.ci_low, m.ci_high, m.p_value),
                (true, None) | (false, _) => (e.estimate, e.std_error, e.ci_low, e.ci_high, e.p_value),
            }
        })
        .filter(|r| r.0.is_finite() && r.1.is_finite())
        .collect();
    let n = rows.len() as f64;
    let cover = rows.iter().filter(|r| r.2 <= truth && truth <= r.3).count() as f64 / n;
    let mean = rows.iter().map(|r| r.0).sum::<f64>() / n;
    let sd = (rows.iter().map(|r| (r.0 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    Coverage {
        replicates: rows.len(),
        coverage: cover,
        coverage_mcse: (cover * (1.0 - cover) / n).sqrt(),
        bias: mean - truth,
        empirical_se: sd,
        mean_se: rows.iter().map(|r| r.1).sum::<f64>() / n,
        rejection_rate: rows.iter().filter(|r| r.4 < 0.05).count() as f64 / n,
    }
}

/// Simulates `replicates` populations from `base` (seeds `base.seed + index`), evaluates each with `study`
/// (whose table paths are ignored) and returns the first outcome's pooled effect per replicate. Replicates
/// that cannot be analysed are left out.
pub fn run_replicates(base: &SimConfig, study: &Study, replicates: u64) -> Vec<Replicate> {
    let plan = Plan::new(study.clone()).expect("a valid study");
    (0..replicates)
        .into_par_iter()
        .filter_map(|index| {
            let cfg = SimConfig { seed: base.seed.wrapping_add(index), ..base.clone() };
            let pop = simulate(&cfg).ok()?;
            let (schools, pupils) = population_tables(&pop).ok()?;
            let ev = evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).ok()?;
            let pooled = ev.outcomes.first()?.effects.iter().find(|e| e.year.is_pooled())?.clone();
            Some(Replicate { index, pooled })
        })
        .collect()
}
