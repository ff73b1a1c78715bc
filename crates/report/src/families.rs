//! The outputs of `psmeval families`: `families.csv` (one row per school and member), `summary.csv` (one row
//! per school: its family's mean intake, spread and mean distance) and a short report (report.md and
//! report.html) saying how the families were formed, how close they are, and showing one school's family
//! in a table and a figure (its intake beside its members', in SDs of all schools).

use psmeval_matching::families::{Families, FamilyMetric};

use crate::document::Document;
use crate::evaluation::figure;
use crate::format::{count, csv_line, full, num, pval};
use crate::plot::FamilyProfile;
use crate::{Artifact, ReportError};

/// Renders the files of a family search; `focus` is the id of the school whose family the report shows
/// (the first school when `None` or not found).
pub fn render_families(f: &Families, focus: Option<&str>) -> Result<Vec<Artifact>, ReportError> {
    let mut members = csv_line(&["school_id".into(), "member_id".into(), "rank".into(), "distance".into()]);
    for fam in &f.families {
        for m in &fam.members {
            members.push_str(&csv_line(&[fam.id.clone(), m.id.clone(), m.rank.to_string(), full(m.distance)]));
        }
    }
    let mut header = vec!["school_id".to_string()];
    if let Some(w) = &f.within {
        header.push(w.clone());
    }
    header.extend(f.variables.iter().cloned());
    if f.treat.is_some() {
        header.push("propensity".into());
    }
    header.extend(f.variables.iter().map(|v| format!("family_mean_{v}")));
    header.extend(f.variables.iter().map(|v| format!("family_sd_{v}")));
    header.push("mean_distance".into());
    let mut summary = csv_line(&header);
    for fam in &f.families {
        let mut row = vec![fam.id.clone()];
        if f.within.is_some() {
            row.push(fam.group.clone().unwrap_or_default());
        }
        row.extend(fam.values.iter().map(|&v| full(v)));
        if f.treat.is_some() {
            row.push(fam.propensity.map_or_else(|| "NA".into(), full));
        }
        row.extend(fam.mean.iter().map(|&v| full(v)));
        row.extend(fam.sd.iter().map(|&v| full(v)));
        row.push(full(fam.mean_distance));
        summary.push_str(&csv_line(&row));
    }
    let mut files = vec![Artifact::text("families.csv", members), Artifact::text("summary.csv", summary)];
    let doc = document(f, focus, &mut files)?;
    files.push(Artifact::text("report.md", doc.markdown()));
    files.push(Artifact::text("report.html", doc.html()));
    Ok(files)
}

fn document(f: &Families, focus: Option<&str>, files: &mut Vec<Artifact>) -> Result<Document, ReportError> {
    let mut d = Document { title: "Families of similar schools".into(), ..Default::default() };
    let metric = match f.metric {
        FamilyMetric::Mahalanobis => "by the Mahalanobis distance on the covariance of the variables over all schools",
        FamilyMetric::Standardized => "by the Euclidean distance of the variables standardized by their SDs",
        FamilyMetric::Propensity => {
            "by the difference of their linear propensity scores (the logit of a logistic regression on the \
             variables) divided by the scores' SD over all schools"
        }
    };
    let within = f.within.as_ref().map_or(String::new(), |w| format!(", among schools of the same `{w}`"));
    d.p(format!(
        "Each of the {} schools is given a family of the {} schools most like it on {}, {metric}{within}. A school \
         is never in its own family; ties in distance are broken by school id. Distances are in SD units: 1 means \
         the two schools differ by about one standard deviation of intake.",
        count(f.n_schools),
        f.k,
        f.variables.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
    ));
    let mut md: Vec<f64> = f.families.iter().map(|fam| fam.mean_distance).collect();
    md.sort_by(f64::total_cmp);
    let q = |p: f64| md[((md.len() - 1) as f64 * p).round() as usize];
    d.h(2, "How close the families are");
    d.table(
        &["statistic", "minimum", "lower quartile", "median", "upper quartile", "maximum"],
        vec![vec![
            "mean distance of a school's family".into(),
            num(q(0.0), 2),
            num(q(0.25), 2),
            num(q(0.5), 2),
            num(q(0.75), 2),
            num(q(1.0), 2),
        ]],
    );
    d.p("Schools with a large mean distance have unusual intakes: their families are less alike, and comparisons \
         with them say less."
        .to_string());
    if let Some(t) = &f.treat {
        d.h(2, "The propensity model");
        d.p(format!(
            "The propensity score of a school is its modelled probability that `{t}` = 1, from `glm({t} ~ {}, family \
             = binomial)`; schools with similar scores had a similar chance of `{t}` = 1 whatever their mix of \
             intake, so a family on this metric is a set of comparison schools in the sense of propensity-score \
             matching, not schools with the same intake.",
            f.variables.join(" + ")
        ));
        let rows = f
            .propensity
            .iter()
            .map(|c| vec![c.term.clone(), num(c.estimate, 4), num(c.std_error, 4), pval(c.p_value)])
            .collect();
        d.table(&["term", "estimate (log-odds)", "SE", "p"], rows);
    }
    let chosen = focus.and_then(|id| f.families.iter().find(|fam| fam.id == id)).or_else(|| f.families.first());
    if let Some(fam) = chosen {
        d.h(2, format!("The family of school {}", fam.id));
        let mut rows = vec![];
        for m in &fam.members {
            rows.push(vec![m.rank.to_string(), m.id.clone(), num(m.distance, 3)]);
        }
        d.table(&["rank", "school", "distance"], rows);
        let rows = f
            .variables
            .iter()
            .enumerate()
            .map(|(v, name)| {
                let own = fam.values.get(v).map_or_else(|| "–".into(), |&x| num(x, 2));
                vec![name.clone(), own, num(fam.mean[v], 2), num(fam.sd[v], 2)]
            })
            .collect();
        d.table(&["variable", "school", "family mean", "family SD"], rows);
        if f.center.len() == f.variables.len() && fam.values.len() == f.variables.len() {
            let index: std::collections::HashMap<&str, &psmeval_matching::families::Family> =
                f.families.iter().map(|g| (g.id.as_str(), g)).collect();
            let z = |v: usize, x: f64| (x - f.center[v]) / f.scale[v];
            let rows = (0..f.variables.len())
                .map(|v| {
                    let members = fam
                        .members
                        .iter()
                        .filter_map(|m| index.get(m.id.as_str()))
                        .map(|g| z(v, g.values[v]))
                        .collect();
                    (f.variables[v].clone(), z(v, fam.values[v]), members, z(v, fam.mean[v]), fam.sd[v] / f.scale[v])
                })
                .collect();
            let plot = FamilyProfile {
                title: format!("Intake of school {} and its family", fam.id),
                school_label: format!("School {}", fam.id),
                rows,
            };
            let caption = format!(
                "School {} (red) beside the {} members of its family (grey) and their mean ± SD (blue), each variable in \
                 SDs from the mean of all schools.",
                fam.id,
                fam.members.len()
            );
            d.blocks.push(figure(&plot, files, "family", caption)?);
        }
    }
    d.p("Files: `families.csv` (school_id, member_id, rank, distance; rank 1 is the nearest) and `summary.csv` (each \
         school's own values, its family mean and SD of every variable, and its mean distance)."
        .to_string());
    Ok(d)
}
