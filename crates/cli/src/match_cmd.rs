//! `psmeval match`: propensity scores, matching and balance for one unit table, written as a matched-unit
//! table, a JSON summary, a balance table on stdout and optional figures.

use anyhow::Result;
use polars::prelude::{Column as PlColumn, DataFrame};

use crate::args::MatchArgs;
use crate::matching::{MatchRun, run_matching};
use crate::plot::{self, DistributionPanel, DistributionPlot, LovePlot};
use crate::report::{num, opt};
use crate::table::{Format, load_table, require_binary, require_unique_ids, write_dataframe, write_text};

/// Runs the command.
pub fn run(a: &MatchArgs) -> Result<()> {
    let out_format = Format::from_path(&a.out)?;
    for p in [&a.love_plot, &a.score_plot].into_iter().flatten() {
        match p.extension().and_then(|e| e.to_str()) {
            Some("svg" | "png") => {}
            _ => {
                return Err(crate::error::InputError::new(format!(
                    "{}: figures are written as .svg or .png",
                    p.display()
                ))
                .into());
            }
        }
    }
    let table = load_table(&a.data)?;
    let formula = psmeval_frame::parse_formula(&a.spec.formula)
        .map_err(|e| crate::error::InputError::new(format!("--formula: {e}")))?;
    let treatment = formula.response.label();
    let treat = require_binary(&table, &treatment, &a.data)?;
    let ids = require_unique_ids(&table, &a.id, &a.data)?;
    let run = run_matching(&a.spec, &table, &treat, &ids, &a.data)?;
    let mut df = matched_frame(&run)?;
    write_dataframe(&a.out, &mut df, out_format)?;
    if let Some(p) = &a.json {
        write_text(p, &(serde_json::to_string_pretty(&run)? + "\n"))?;
    }
    if let Some(p) = &a.love_plot {
        plot::save(&love_plot(&run), p)?;
    }
    if let Some(p) = &a.score_plot {
        plot::save(&score_plot(&run), p)?;
    }
    print!("{}", summary_text(&run));
    Ok(())
}

/// The matched-unit table: one row per unit kept (weight > 0).
pub fn matched_frame(run: &MatchRun) -> Result<DataFrame> {
    let kept: Vec<&crate::matching::Unit> = run.units.iter().filter(|u| u.weight > 0.0).collect();
    Ok(DataFrame::new_infer_height(vec![
        PlColumn::new("id".into(), kept.iter().map(|u| u.id.as_str()).collect::<Vec<_>>()),
        PlColumn::new("treated".into(), kept.iter().map(|u| i64::from(u.treated)).collect::<Vec<_>>()),
        PlColumn::new("distance".into(), kept.iter().map(|u| u.distance).collect::<Vec<_>>()),
        PlColumn::new("weight".into(), kept.iter().map(|u| u.weight).collect::<Vec<_>>()),
        PlColumn::new("subclass".into(), kept.iter().map(|u| u.subclass.clone()).collect::<Vec<_>>()),
    ])?)
}

/// The Love plot of a run.
pub fn love_plot(run: &MatchRun) -> LovePlot {
    LovePlot {
        title: "Covariate balance before and after matching".into(),
        rows: run.balance.before.iter().zip(&run.balance.after).map(|(b, a)| (b.term.clone(), b.smd, a.smd)).collect(),
    }
}

/// The distance distributions of a run, before and after matching.
pub fn score_plot(run: &MatchRun) -> DistributionPlot {
    let pick = |treated: bool, after: bool| -> Vec<(f64, f64)> {
        run.units
            .iter()
            .filter(|u| u.treated == treated && (!after || u.weight > 0.0))
            .map(|u| (u.distance, if after { u.weight } else { 1.0 }))
            .collect()
    };
    DistributionPlot {
        title: "Distance of treated and control units".into(),
        x_label: run.distance_label.clone(),
        panels: vec![
            DistributionPanel {
                title: "Before matching".into(),
                treated: pick(true, false),
                control: pick(false, false),
            },
            DistributionPanel {
                title: "After matching (weighted)".into(),
                treated: pick(true, true),
                control: pick(false, true),
            },
        ],
        groups: ("Treated".into(), "Control".into()),
    }
}

/// A readable summary: sample sizes and the balance table, as MatchIt's `summary()` prints them.
pub fn summary_text(run: &MatchRun) -> String {
    let n = &run.n;
    let mut s = String::new();
    s += "Sample sizes:\n";
    s += &format!("{:<12}{:>10}{:>10}\n", "", "Control", "Treated");
    for (label, c, t) in [
        ("All", n.all_control, n.all_treated),
        ("Matched", n.matched_control, n.matched_treated),
        ("Unmatched", n.unmatched_control, n.unmatched_treated),
        ("Discarded", n.discarded_control, n.discarded_treated),
    ] {
        s += &format!("{label:<12}{c:>10}{t:>10}\n");
    }
    s += &format!("{:<12}{:>10}{:>10}\n", "Matched ESS", num(n.ess_control, 2), num(n.ess_treated, 2));
    let width = run.balance.before.iter().map(|r| r.term.len()).max().unwrap_or(8).max(8);
    for (title, rows) in [("before", &run.balance.before), ("after", &run.balance.after)] {
        s += &format!("\nBalance {title} matching:\n");
        s += &format!(
            "{:<width$}{:>12}{:>12}{:>10}{:>10}{:>10}{:>10}\n",
            "", "Means Trt", "Means Ctl", "Std Diff", "Var Ratio", "eCDF Mean", "eCDF Max"
        );
        for r in rows {
            s += &format!(
                "{:<width$}{:>12}{:>12}{:>10}{:>10}{:>10}{:>10}\n",
                r.term,
                num(r.mean_treated, 4),
                num(r.mean_control, 4),
                opt(r.smd, 4),
                opt(r.var_ratio, 4),
                num(r.ecdf_mean, 4),
                num(r.ecdf_max, 4)
            );
        }
    }
    if !run.unmatched_treated.is_empty() {
        s += &format!("\nTreated units without a match: {}\n", run.unmatched_treated.join(", "));
    }
    for note in &run.notes {
        s += &format!("Note: {note}\n");
    }
    s.replace('−', "-")
}
