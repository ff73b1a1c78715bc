//! `psmeval lmm`: fit one linear (or logistic) mixed model from a table and an lme4 formula, print an
//! lme4-like summary, and write the fit as JSON and the conditional modes as CSV.
//!
//! The JSON is the [`ModelRecord`] that `psmeval evaluate`'s `results.json` embeds for each impact model. It
//! holds no timings, so the same data and formula give identical bytes.

use anyhow::Result;
use psmeval_evaluation::model::{ModelOptions, Weights, fit_model};
use psmeval_evaluation::record::RobustRecord;
use psmeval_evaluation::{Family, ModelRecord};
use psmeval_frame::{build_model_frame, parse_formula};

use crate::args::{DdfArg, FamilyArg, LmmArgs, VcovArg};
use crate::error::InputError;
use crate::table::{Outputs, check_output_file, load_columns};

/// Runs `psmeval lmm`.
pub fn run(a: &LmmArgs) -> Result<()> {
    let at = |e: String| -> anyhow::Error { InputError::new(format!("{}: {e}", a.data.display())).into() };
    let formula = parse_formula(&a.formula).map_err(|e| InputError::new(format!("--formula: {e}")))?;
    if formula.random.is_empty() {
        return Err(InputError::new(format!(
            "--formula: `{}` has no random-effects term such as `(1 | school_id)`; a mixed model needs one",
            a.formula
        ))
        .into());
    }
    if a.nagq == 0 {
        return Err(InputError::new("--nagq must be at least 1 (1 = Laplace)").into());
    }
    let family = match a.family {
        FamilyArg::Gaussian => Family::Gaussian,
        FamilyArg::Binomial => Family::Binomial,
    };
    match family {
        Family::Gaussian if a.nagq != 1 => {
            return Err(InputError::new("--nagq applies to --family binomial only").into());
        }
        Family::Binomial if a.vcov == VcovArg::Cr2 => {
            return Err(InputError::new("--vcov cr2 applies to linear models (--family gaussian)").into());
        }
        Family::Binomial if a.ddf.is_some() => {
            return Err(InputError::new(
                "--ddf applies to linear models; logistic models' fixed effects have Wald z tests",
            )
            .into());
        }
        Family::Binomial if a.ml => {
            return Err(
                InputError::new("--ml applies to linear models; logistic models are always fitted by ML").into()
            );
        }
        _ => {}
    }
    let progress = crate::progress::Progress::new(a.quiet);
    let step = progress.step("loading the table");
    for p in [&a.json, &a.ranef].into_iter().flatten() {
        check_output_file(p, &[a.data.as_path()])?;
    }
    if let (Some(j), Some(r)) = (&a.json, &a.ranef)
        && j == r
    {
        return Err(InputError::new(format!("{}: named for both --json and --ranef", j.display())).into());
    }
    // Only the columns the model uses are read.
    let mut used = formula.columns();
    used.extend(a.weights.iter().chain(&a.cluster).cloned());
    let table = load_columns(&a.data, &used)?;
    step.finish();
    let step = progress.step("building the model frame");
    let frame = build_model_frame(&formula, &table).map_err(|e| at(e.to_string()))?;
    step.finish();
    let weights = match &a.weights {
        Some(c) => {
            let w = table.numeric(c).map_err(|e| at(format!("--weights: {e}")))?;
            let w: Vec<f64> = frame.rows.iter().map(|&i| w[i]).collect();
            if let Some(k) = w.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(at(format!(
                    "--weights: `{c}` is {} in data row {}; weights must be positive",
                    w[k],
                    frame.rows[k] + 1
                )));
            }
            Weights::Prior(w)
        }
        None => Weights::None,
    };
    let n_dropped = frame.n_dropped;
    // Cluster codes per frame row for CR2: a column, or by default the grouping factor with the fewest levels.
    let cluster = match (a.vcov, &a.cluster) {
        (VcovArg::Model, _) => None,
        (VcovArg::Cr2, Some(c)) => {
            let col = table.column(c).map_err(|e| at(format!("--cluster: {e}")))?;
            let labels: Vec<Option<String>> = frame.rows.iter().map(|&i| col.text_at(i)).collect();
            if let Some(k) = labels.iter().position(Option::is_none) {
                return Err(at(format!("--cluster: `{c}` is missing in data row {}", frame.rows[k] + 1)));
            }
            let labels: Vec<String> = labels.into_iter().flatten().collect();
            let mut levels = labels.clone();
            levels.sort();
            levels.dedup();
            let codes = labels.iter().map(|l| levels.binary_search(l).expect("present") as u32).collect();
            Some((c.clone(), codes))
        }
        (VcovArg::Cr2, None) => {
            let term = frame.random.iter().min_by_key(|t| t.levels.len()).expect("a random term, checked above");
            Some((term.group.clone(), term.codes.clone()))
        }
    };
    let prior: Option<Vec<f64>> = match &weights {
        Weights::Prior(w) => Some(w.clone()),
        _ => None,
    };
    let options = ModelOptions {
        reml: !a.ml,
        nagq: a.nagq,
        satterthwaite: a.ddf != Some(DdfArg::Lme4),
        ..ModelOptions::new(family)
    };
    let step = progress.step("fitting the model");
    let (fit, frame) = fit_model(&formula, &table, frame, weights, &options)
        .map_err(|e| at(format!("cannot fit `{}`: {e}", a.formula)))?;
    step.finish();
    let mut record: ModelRecord = fit.record(&a.formula, n_dropped);
    if let (Some((name, codes)), ModelRecord::Linear(r)) = (&cluster, &mut record) {
        let step = progress.step("cluster-robust (CR2) variance");
        let cr2 = fit.cr2(&frame, prior.as_deref(), codes).map_err(|e| at(format!("--vcov cr2: {e}")))?;
        r.robust = Some(RobustRecord::cr2(name, &cr2));
        step.finish();
    }
    let mut outputs = Outputs::new();
    outputs.protect(&a.data);
    if let Some(p) = &a.json {
        outputs.add(p, serde_json::to_string_pretty(&record)? + "\n");
    }
    if let Some(p) = &a.ranef {
        outputs.add(p, psmeval_report::lmm::ranef_csv(fit.ranef()));
    }
    outputs.commit()?;
    print!("{}", psmeval_report::lmm::summary_text(&record));
    Ok(())
}
