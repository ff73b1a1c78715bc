//! The outputs of `psmeval value-added`: `value_added.csv` (one row per school), a caterpillar plot of the
//! schools' value-added with one school highlighted, and a report (report.md, report.html) with the model,
//! how many schools are above, in line with and below expectation, the extremes, and the highlighted
//! school beside its family.

use psmeval_evaluation::value_added::{Flag, GroupValueAdded, ValueAdded};

use crate::document::Document;
use crate::evaluation::figure;
use crate::format::{count, csv_line, full, full_opt, num};
use crate::plot::{CaterpillarPlot, RankedIntervals};
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
                Flag::Above => "above",
                Flag::InLine => "in line with",
                Flag::Below => "below",
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
    if !va.groups.is_empty() {
        groups_section(va, &mut d, &mut files)?;
    }
    d.p("Every school's value-added, interval, flag and (with --family-file) family comparison: `value_added.csv`."
        .to_string());
    files.push(Artifact::text("report.md", d.markdown()));
    files.push(Artifact::text("report.html", d.html()));
    Ok(files)
}

/// The under-performing groups: `groups.csv`, a table of the groups nationally, a table and figure of the
/// areas' pupils as a whole, and the groups below expectation in an area.
fn groups_section(va: &ValueAdded, d: &mut Document, files: &mut Vec<Artifact>) -> Result<(), ReportError> {
    let mut csv = csv_line(
        &["variable", "level", "area", "pupils", "schools", "value_added", "std_error", "df", "lower", "upper", "flag"]
            .map(String::from),
    );
    for g in &va.groups {
        csv.push_str(&csv_line(&[
            g.variable.clone(),
            g.level.clone(),
            g.area.clone().unwrap_or_else(|| "all".into()),
            g.pupils.to_string(),
            g.schools.to_string(),
            full(g.value_added),
            full(g.std_error),
            full(g.df),
            full(g.lower),
            full(g.upper),
            g.flag.label().to_string(),
        ]));
    }
    files.push(Artifact::text("groups.csv", csv));
    d.h(2, "Pupil groups");
    let by = va.by.as_deref().unwrap_or("area");
    d.p(format!(
        "A group's value-added is the mean, over its pupils, of their result minus what the model expects of pupils \
         like them nationally: it includes what their schools added. Intervals are 95% and allow for pupils being \
         clustered in schools (cluster-robust over the group's schools, t with schools − 1 df); a group is below \
         (above) expectation when its interval lies wholly below (above) 0. For a characteristic that is in the \
         model (such as FSM) the model already expects its pupils to score lower within their schools, so the \
         group's value-added is what their schools add: near 0 when the group is spread evenly over schools, \
         negative when it is concentrated in schools that add less; within a {by} it says whether those pupils \
         do as well as such pupils nationally."
    ));
    let row = |g: &GroupValueAdded| {
        vec![
            format!("{} = {}", g.variable, g.level),
            g.area.clone().unwrap_or_else(|| "all".into()),
            count(g.pupils),
            count(g.schools),
            num(g.value_added, 3),
            format!("{} to {}", num(g.lower, 3), num(g.upper, 3)),
            g.flag.label().to_string(),
        ]
    };
    let header = ["group", by, "pupils", "schools", "value-added", "95% interval", "expectation"];
    let national: Vec<Vec<String>> = va.groups.iter().filter(|g| g.area.is_none()).map(row).collect();
    if !national.is_empty() {
        d.table(&header, national);
    }
    let mut areas: Vec<&GroupValueAdded> =
        va.groups.iter().filter(|g| g.area.is_some() && g.variable == "all pupils").collect();
    if !areas.is_empty() {
        areas.sort_by(|a, b| a.value_added.total_cmp(&b.value_added).then(a.area.cmp(&b.area)));
        let plot = RankedIntervals {
            title: format!("Value-added of each {by}'s pupils"),
            x_label: "Mean value-added (outcome units), 95% CI".into(),
            rows: areas.iter().map(|g| (g.area.clone().unwrap_or_default(), g.value_added, g.lower, g.upper)).collect(),
        };
        let block = figure(
            &plot,
            files,
            "areas",
            format!("Each {by}'s pupils as a whole, lowest value-added first, with school-clustered 95% CIs."),
        )?;
        d.blocks.push(block);
    }
    let mut below: Vec<&GroupValueAdded> =
        va.groups.iter().filter(|g| g.area.is_some() && g.flag == Flag::Below && g.variable != "all pupils").collect();
    below.sort_by(|a, b| a.value_added.total_cmp(&b.value_added));
    if va.by.is_some() {
        d.h(3, format!("Groups below expectation in a {by}"));
        if below.is_empty() {
            d.p(format!("No group is below expectation in any {by}."));
        } else {
            d.p(format!(
                "{} of {} groups within a {by} are below expectation; the {} lowest:",
                below.len(),
                va.groups.iter().filter(|g| g.area.is_some() && g.variable != "all pupils").count(),
                below.len().min(15)
            ));
            d.table(&header, below.iter().take(15).map(|g| row(g)).collect());
        }
    }
    if !va.groups_omitted.is_empty() {
        d.p(format!(
            "Without an interval (pupils in one school only): {}.",
            va.groups_omitted.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    d.p("Every group, nationally and within each area: `groups.csv`.".to_string());
    Ok(())
}
