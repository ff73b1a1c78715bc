//! The outputs of `psmeval families`: `families.csv` (one row per school and member), `summary.csv` (one row
//! per school: its family's mean intake, spread and mean distance) and a short report (report.md and
//! report.html) saying how the families were formed, how close they are, and showing one school's family.

use psmeval_matching::families::{Families, FamilyMetric};

use crate::Artifact;
use crate::document::Document;
use crate::format::{count, csv_line, full, num};

/// Renders the files of a family search; `focus` is the id of the school whose family the report shows
/// (the first school when `None` or not found).
pub fn render_families(f: &Families, focus: Option<&str>) -> Vec<Artifact> {
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
    header.extend(f.variables.iter().map(|v| format!("family_mean_{v}")));
    header.extend(f.variables.iter().map(|v| format!("family_sd_{v}")));
    header.push("mean_distance".into());
    let mut summary = csv_line(&header);
    for fam in &f.families {
        let mut row = vec![fam.id.clone()];
        if f.within.is_some() {
            row.push(fam.group.clone().unwrap_or_default());
        }
        row.extend(fam.mean.iter().map(|&v| full(v)));
        row.extend(fam.sd.iter().map(|&v| full(v)));
        row.push(full(fam.mean_distance));
        summary.push_str(&csv_line(&row));
    }
    let doc = document(f, focus);
    vec![
        Artifact::text("families.csv", members),
        Artifact::text("summary.csv", summary),
        Artifact::text("report.md", doc.markdown()),
        Artifact::text("report.html", doc.html()),
    ]
}

fn document(f: &Families, focus: Option<&str>) -> Document {
    let mut d = Document { title: "Families of similar schools".into(), ..Default::default() };
    let metric = match f.metric {
        FamilyMetric::Mahalanobis => "by the Mahalanobis distance on the covariance of the variables over all schools",
        FamilyMetric::Standardized => "by the Euclidean distance of the variables standardized by their SDs",
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
            .map(|(v, name)| vec![name.clone(), num(fam.mean[v], 2), num(fam.sd[v], 2)])
            .collect();
        d.table(&["variable", "family mean", "family SD"], rows);
    }
    d.p("Files: `families.csv` (school_id, member_id, rank, distance; rank 1 is the nearest) and `summary.csv` (each \
         school's family mean and SD of every variable, and its mean distance)."
        .to_string());
    d
}
