//! Renderings of a matching run ([`MatchResult`]): MatchIt-style summary text (sample sizes and balance
//! tables, as `summary(m)` prints them), the Love plot and the distance distributions.

use psmeval_matching::MatchResult;

use crate::format::{num, opt};
use crate::plot::{DistributionPanel, DistributionPlot, LovePlot};

/// The Love plot of a run.
pub fn love_plot(run: &MatchResult) -> LovePlot {
    LovePlot {
        title: "Covariate balance before and after matching".into(),
        rows: run.balance.before.iter().zip(&run.balance.after).map(|(b, a)| (b.term.clone(), b.smd, a.smd)).collect(),
    }
}

/// The distance distributions of a run, before and after matching.
pub fn score_plot(run: &MatchResult) -> DistributionPlot {
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
pub fn summary_text(run: &MatchResult) -> String {
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
