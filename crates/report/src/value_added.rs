//! The outputs of `psmeval value-added`: `value_added.csv` (one row per school), a caterpillar plot of the
//! schools' value-added with one school highlighted, and a report (report.md, report.html) with the model,
//! how many schools are above, in line with and below expectation, the extremes, and the highlighted
//! school beside its family.

use psmeval_evaluation::value_added::ValueAdded;

use crate::document::Document;
use crate::evaluation::figure;
use crate::format::{count, csv_line, full, full_opt, num};
use crate::plot::CaterpillarPlot;
use crate::{Artifact, ReportError};

/// Renders a value-added analysis; `highlight` is the school shown in the figure and the report (the
/// first school when `None` or not found).
pub fn render_value_added(va: &ValueAdded, highlight: Option<&str>) -> Result<Vec<Artifact>, ReportError> {
    let mut files = Vec::new();
    let mut csv = csv_line(
        &[
            "school_id",
            "pupils",
            "value_added",
            "cond_sd",
            "lower",
            "upper",
            "flag",
            "family_mean",
            "family_members",
            "versus_family",
            "family_rank",
        ]
        .map(String::from),
    );
    for s in &va.schools {
        csv.push_str(&csv_line(&[
            s.id.clone(),
            s.pupils.to_string(),
            full(s.value_added),
            full(s.cond_sd),
            full(s.lower),
            full(s.upper),
            s.flag.label().to_string(),
            full_opt(s.family_mean),
            s.family_members.to_string(),
            full_opt(s.versus_family),
            s.family_rank.map_or_else(|| "NA".into(), |r| r.to_string()),
        ]));
    }
    files.push(Artifact::text("value_added.csv", csv));
    let chosen = highlight.and_then(|id| va.schools.iter().find(|s| s.id == id)).or_else(|| va.schools.first());
    let mut d = Document { title: "Contextual value-added".into(), ..Default::default() };
    let filters =
        if va.filters.is_empty() { String::new() } else { format!(" (pupils with {})", va.filters.join(", ")) };
    d.p(format!(
        "The model `{}` was fitted to {} pupils in {} schools{filters}; {} rows with a missing value in a model \
         variable were left out. A school's value-added is its random intercept (the conditional mode): how far \
         its pupils' results lie above or below those of similar pupils elsewhere, in the outcome's units, after \
         the model's pupil characteristics. The school intercepts have SD {} and pupils' residual SD is {}. A \
         school is above (below) expectation when its 95% interval (±1.96 conditional SDs) lies wholly above \
         (below) 0; the intervals take the model's variance estimates as known, as lme4's do.",
        va.formula,
        count(va.n_pupils),
        count(va.schools.len()),
        count(va.n_dropped),
        num(va.school_sd, 3),
        num(va.sigma, 3),
    ));
    d.table(
        &["above expectation", "in line", "below expectation"],
        vec![va.counts.iter().map(|&c| count(c)).collect()],
    );
    let effects: Vec<(f64, f64, bool)> =
        va.schools.iter().map(|s| (s.value_added, s.cond_sd, chosen.is_some_and(|c| c.id == s.id))).collect();
    let label = chosen.map_or_else(|| "Highlighted school".to_string(), |c| format!("School {}", c.id));
    let plot = CaterpillarPlot { title: "Value-added of every school".into(), effects, highlight_label: label };
    let block = figure(
        &plot,
        &mut files,
        "value-added",
        "Schools ranked by value-added, with 95% intervals; the highlighted school in red.".into(),
    )?;
    d.blocks.push(block);
    if let Some(s) = chosen {
        d.h(2, format!("School {}", s.id));
        let mut text = format!(
            "School {} has value-added {} (95% interval {} to {}; {} pupils): {} expectation.",
            s.id,
            num(s.value_added, 3),
            num(s.lower, 3),
            num(s.upper, 3),
            count(s.pupils),
            match s.flag {
                psmeval_evaluation::value_added::Flag::Above => "above",
                psmeval_evaluation::value_added::Flag::InLine => "in line with",
                psmeval_evaluation::value_added::Flag::Below => "below",
            }
        );
        if let (Some(m), Some(v), Some(r)) = (s.family_mean, s.versus_family, s.family_rank) {
            text.push_str(&format!(
                " Its family of {} similar schools has mean value-added {}; the school is {} from it and ranks {} \
                 of {} (1 = highest).",
                s.family_members,
                num(m, 3),
                num(v, 3),
                r,
                s.family_members + 1
            ));
        }
        d.p(text);
    }
    let mut ranked: Vec<&_> = va.schools.iter().collect();
    ranked.sort_by(|a, b| b.value_added.total_cmp(&a.value_added).then(a.id.cmp(&b.id)));
    let row = |s: &&psmeval_evaluation::value_added::SchoolValueAdded| {
        vec![
            s.id.clone(),
            count(s.pupils),
            num(s.value_added, 3),
            format!("{} to {}", num(s.lower, 3), num(s.upper, 3)),
        ]
    };
    d.h(2, "Highest and lowest value-added");
    let top: Vec<Vec<String>> = ranked.iter().take(10).map(row).collect();
    d.table(&["school", "pupils", "value-added", "95% interval"], top);
    let bottom: Vec<Vec<String>> = ranked.iter().rev().take(10).map(row).collect();
    d.table(&["school", "pupils", "value-added", "95% interval"], bottom);
    d.p("Every school's value-added, interval, flag and (with --family-file) family comparison: `value_added.csv`."
        .to_string());
    files.push(Artifact::text("report.md", d.markdown()));
    files.push(Artifact::text("report.html", d.html()));
    Ok(files)
}
