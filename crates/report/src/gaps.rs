//! The outputs of `psmeval gaps`: `gaps.csv` (one row per area), a figure of the areas ranked by their gap
//! with 95% intervals, and a report (report.md, report.html) with the table and the counterfactual.

use psmeval_evaluation::gaps::{AreaGap, Gaps};

use crate::document::Document;
use crate::evaluation::figure;
use crate::format::{count, csv_line, full, full_opt, num};
use crate::plot::RankedIntervals;
use crate::{Artifact, ReportError};

/// Renders a gap analysis.
pub fn render_gaps(gp: &Gaps) -> Result<Vec<Artifact>, ReportError> {
    let mut files = Vec::new();
    let mut csv = csv_line(
        &[
            "area",
            "pupils_without",
            "pupils_with",
            "schools",
            "mean_without",
            "mean_with",
            "gap",
            "std_error",
            "df",
            "lower",
            "upper",
            "gap_sd",
            "extra_pupils",
        ]
        .map(String::from),
    );
    for a in gp.areas.iter().chain(std::iter::once(&gp.overall)) {
        csv.push_str(&csv_line(&[
            a.area.clone(),
            a.pupils[0].to_string(),
            a.pupils[1].to_string(),
            a.schools.to_string(),
            full(a.mean[0]),
            full(a.mean[1]),
            full(a.gap),
            full(a.std_error),
            full(a.df),
            full(a.lower),
            full(a.upper),
            full(a.gap_sd),
            full_opt(a.extra_pupils),
        ]));
    }
    files.push(Artifact::text("gaps.csv", csv));
    // Shown in percentage points for a 0/1 outcome.
    let scale = if gp.binary { 100.0 } else { 1.0 };
    let unit = if gp.binary { "percentage points" } else { "outcome units" };
    let mut d =
        Document { title: format!("The `{}` gap in `{}` by `{}`", gp.group, gp.outcome, gp.by), ..Default::default() };
    d.p(format!(
        "The gap is the mean `{}` of pupils without the characteristic `{}` minus that of pupils with it, in {unit} \
         and in SD units of `{}` (SD {} over the {} pupils analysed; {} pupils with a missing value were left out). \
         Its 95% interval allows for the clustering of pupils in schools (cluster-robust CR1 standard errors, t with \
         schools − 1 df).",
        gp.outcome,
        gp.group,
        gp.outcome,
        num(gp.outcome_sd, 3),
        count(gp.n_pupils),
        count(gp.n_missing)
    ));
    let mut ranked: Vec<&AreaGap> = gp.areas.iter().collect();
    ranked.sort_by(|a, b| a.gap.total_cmp(&b.gap).then(a.area.cmp(&b.area)));
    let row = |a: &AreaGap| {
        vec![
            a.area.clone(),
            count(a.pupils[1]),
            count(a.pupils[0]),
            count(a.schools),
            num(a.gap * scale, 1),
            format!("{} to {}", num(a.lower * scale, 1), num(a.upper * scale, 1)),
            num(a.gap_sd, 2),
            a.extra_pupils.map_or_else(|| "–".into(), |e| count(e.round() as usize)),
        ]
    };
    let mut rows: Vec<Vec<String>> = ranked.iter().map(|a| row(a)).collect();
    rows.push(row(&gp.overall));
    d.table(
        &["area", "pupils with", "pupils without", "schools", "gap", "95% interval", "gap (SD)", "more reaching it"],
        rows,
    );
    if let Some(extra) = gp.extra_pupils {
        d.p(format!(
            "If every area's gap were that of {} (the smallest, {} {unit}), {} more pupils with `{}` would reach \
             the standard: in each area, its pupils with `{}` times the excess of its gap over the smallest.",
            gp.best_area,
            num(ranked.first().map_or(0.0, |a| a.gap) * scale, 1),
            count(extra.round() as usize),
            gp.group,
            gp.group
        ));
    }
    let plot = RankedIntervals {
        title: format!("The {} gap by {}", gp.group, gp.by),
        x_label: format!("Gap in {} ({unit}), 95% interval", gp.outcome),
        rows: ranked.iter().map(|a| (a.area.clone(), a.gap * scale, a.lower * scale, a.upper * scale)).collect(),
    };
    let block =
        figure(&plot, &mut files, "gaps", "Areas ranked by their gap, smallest first, with 95% intervals.".into())?;
    d.blocks.push(block);
    d.p("Every area's numbers (in the outcome's own units) are in `gaps.csv`.".to_string());
    files.push(Artifact::text("report.md", d.markdown()));
    files.push(Artifact::text("report.html", d.html()));
    Ok(files)
}
