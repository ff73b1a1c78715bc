//! The report of an evaluation: CSV tables, figures (SVG and PNG) and the document (`report.md`,
//! `report.html`), all rendered from an [`Evaluation`] — nothing is recomputed here, so the same
//! `results.json` always gives the same report.

use std::fmt::Write as _;

use psmeval_evaluation::effects::Period;
use psmeval_evaluation::impact::InferenceSummary;
use psmeval_evaluation::study::{EffectSizeDefinition, Family, InferenceSpec, PermuteAmong};
use psmeval_evaluation::{Evaluation, OutcomeResult};
use psmeval_matching::Method;
use psmeval_matching::balance::BalanceRow;
use psmeval_multilevel::{BootstrapWeights, Statistic, VarianceComponent};

use crate::document::{Block, Document};
use crate::format::{self, count, csv_line, full, full_opt, num, opt, pval};
use crate::plot::{
    self, CONTROL, CaterpillarPlot, DistributionPanel, DistributionPlot, IntervalPlot, IntervalSeries, LovePlot,
    RankedIntervals, TREATED, year_label,
};
use crate::{Artifact, ReportError};

/// Every output of an evaluation's report, as files relative to the output folder: `tables/*.csv`,
/// `figures/*.{svg,png}`, `report.md` and `report.html`.
pub fn render_evaluation(ev: &Evaluation) -> Result<Vec<Artifact>, ReportError> {
    let mut files = tables(ev);
    let doc = document(ev, &mut files)?;
    files.push(Artifact::text("report.md", doc.markdown()));
    files.push(Artifact::text("report.html", doc.html()));
    Ok(files)
}

/// The report document alone (its figures rendered and discarded).
pub fn evaluation_document(ev: &Evaluation) -> Result<Document, ReportError> {
    document(ev, &mut Vec::new())
}

/// The units of an outcome's effect estimates, for the summary.
fn units(o: &OutcomeResult) -> &'static str {
    match (o.family, o.standardized) {
        (Family::Binomial, _) => "log-odds ratio; ",
        (Family::Gaussian, true) => "SD units; ",
        (Family::Gaussian, false) => "",
    }
}

/// "= 0.012" or "< 0.001", for running text.
fn p_phrase(p: f64) -> String {
    let v = pval(p);
    match v.strip_prefix('<') {
        Some(rest) => format!("< {rest}"),
        None => format!("= {v}"),
    }
}

/// Satterthwaite df as shown: ∞ for the Wald z tests of logistic models, NA where the df could not be
/// computed. (JSON keeps no infinity, so the family says which.)
fn df_label(df: f64, family: Family) -> String {
    if df.is_finite() {
        format::df(df)
    } else if family == Family::Binomial {
        "∞ (z)".into()
    } else {
        "NA".into()
    }
}

/// What the intervals of an outcome account for, in one sentence.
fn inference_sentence(i: &InferenceSummary, o: &OutcomeResult, spec: &InferenceSpec) -> String {
    match i.method.as_str() {
        "CR2" => {
            let pooled = o.effects.iter().find(|e| e.year.is_pooled());
            format!(
                "Standard errors, confidence intervals and p values are cluster-robust (CR2, with Bell–McCaffrey \
                 small-sample degrees of freedom), clustered by {} ({} clusters, {} of them treatment schools): they \
                 allow for pupils being clustered in schools and for any school-by-year (cohort) and school-level trend \
                 variation beyond what the model's random effects represent, and their df reflect the number of schools, not \
                 pupils.{}",
                i.cluster.as_deref().unwrap_or("school"),
                i.clusters.map_or("–".into(), count),
                count(o.counts.n_treated_schools),
                pooled.and_then(|e| e.model_based.as_ref().map(|m| (e, m))).map_or(String::new(), |(e, m)| format!(
                    " The model-based ({}) SE of the pooled effect is {} against the robust {}.",
                    if o.family == Family::Binomial { "glmer" } else { "lme4" },
                    num(m.std_error, 3),
                    num(e.std_error, 3)
                ))
            )
        }
        "wild bootstrap" => format!(
            "P values and confidence intervals come from a wild cluster bootstrap-t (restricted, {} weights, {} \
             draws, CR2 standard errors in every draw, intervals by test inversion), clustered by {} ({} clusters, \
             {} of them treatment schools); the standard errors and df shown are CR2's. They allow for pupils \
             being clustered in schools and for any school-by-year and school-level trend variation beyond what \
             the model's random effects represent.",
            match spec.bootstrap_weights {
                BootstrapWeights::Webb => "Webb",
                BootstrapWeights::Rademacher => "Rademacher",
            },
            count(spec.bootstrap_draws),
            i.cluster.as_deref().unwrap_or("school"),
            i.clusters.map_or("–".into(), count),
            count(o.counts.n_treated_schools),
        ),
        "permutation" => format!(
            "P values and confidence intervals of the programme effects come from randomization inference: the \
             treatment was re-assigned {} times {} ({} treatment schools of {}) and {} each time with the variance \
             components held at their estimates; each interval holds the effects a test at 5% does not reject, \
             under the null that the programme shifted the results of treatment-school pupils by that amount (in a \
             single year's row, by that amount in that year and by the estimated effects in the others, which makes \
             those rows approximate). They rest on the treatment being as good as random {} and on that shift, \
             not on the model's assumptions about schools and cohorts. The standard errors and df shown, and the \
             event study's intervals, are CR2's, clustered by {}.{}",
            count(spec.permutations),
            match spec.permute {
                PermuteAmong::MatchedSet => "among the schools of each matched set",
                PermuteAmong::All => "among all matched schools",
            },
            count(o.counts.n_treated_schools),
            count(o.counts.n_schools),
            match spec.statistic {
                Statistic::Studentized => {
                    "the effect's t statistic (the estimate over its cluster-robust standard error by school) \
                     recomputed"
                }
                Statistic::Estimate => "the effect re-estimated",
            },
            match spec.permute {
                PermuteAmong::MatchedSet => "within matched sets",
                PermuteAmong::All => "among the matched schools (a stronger assumption than within matched sets)",
            },
            i.cluster.as_deref().unwrap_or("school"),
            if spec.replacement_default {
                " Randomization inference is psmeval's default for a design matched with replacement (the study \
                 names no method): in simulations of a Maths Teacher Exchange design matched with replacement, CR2 \
                 intervals covered the true effect in 93.0% of populations and randomization intervals in 95.0%."
            } else {
                ""
            },
        ),
        "Wald z" => "Standard errors, confidence intervals and p values are the logistic model's Wald z tests: they \
                     allow for pupils being clustered in schools through the school random effects only."
            .into(),
        _ => "Standard errors, confidence intervals and p values are the mixed model's own (lme4, with lmerTest's \
              Satterthwaite df): they allow for pupils being clustered in schools through the random effects only."
            .into(),
    }
}

/// What an outcome's effect intervals account for, as a clause for figure captions.
fn interval_clause(inference: Option<&InferenceSummary>) -> String {
    match inference.map(|i| (i.method.as_str(), i)) {
        Some(("CR2", i)) => format!(
            "cluster-robust (CR2, Bell–McCaffrey df) with {} as clusters: they allow for pupils being clustered in \
             schools and for cohort and school-level variation the random effects miss",
            i.cluster.as_deref().unwrap_or("school")
        ),
        Some(("wild bootstrap", i)) => format!(
            "from a wild cluster bootstrap with {} as clusters: they allow for pupils being clustered in schools and \
             for cohort and school-level variation the random effects miss",
            i.cluster.as_deref().unwrap_or("school")
        ),
        Some(("permutation", _)) => "from randomization inference, the treatment re-assigned among schools: they \
                                     rest on the treatment being as good as random among them, not on the model's \
                                     assumptions about schools and cohorts"
            .into(),
        Some(("Wald z", _)) => {
            "the logistic model's Wald intervals: they allow for clustering through the random effects only".into()
        }
        _ => {
            "the mixed model's own (Satterthwaite df): they allow for clustering through the random effects only".into()
        }
    }
}

/// [`interval_clause`] for the event study, which keeps CR2 t intervals when the programme effects are
/// resampled (wild bootstrap, randomization).
fn event_clause(inference: Option<&InferenceSummary>) -> String {
    match inference {
        Some(i) if matches!(i.method.as_str(), "wild bootstrap" | "permutation") => {
            interval_clause(Some(&InferenceSummary { method: "CR2".into(), ..i.clone() }))
        }
        other => interval_clause(other),
    }
}

/// `(year, estimate, low, high)` of the per-year rows of `effects` (the pooled row left out), for a figure.
fn year_points(effects: &[psmeval_evaluation::effects::Effect]) -> Vec<(f64, f64, f64, f64)> {
    effects
        .iter()
        .filter_map(|e| match e.year {
            Period::Year(y) => Some((y as f64, e.estimate, e.ci_low, e.ci_high)),
            Period::Pooled(_) => None,
        })
        .collect()
}

fn period_label(p: &Period) -> String {
    match p {
        Period::Year(y) => y.to_string(),
        Period::Pooled(_) => "pooled".into(),
    }
}

fn tables(ev: &Evaluation) -> Vec<Artifact> {
    let mut balance = csv_line(
        &["stage", "term", "mean_treated", "mean_control", "smd", "var_ratio", "ecdf_mean", "ecdf_max"]
            .map(String::from),
    );
    for (stage, rows) in [("before", &ev.matching.balance.before), ("after", &ev.matching.balance.after)] {
        for r in rows {
            balance += &csv_line(&[
                stage.into(),
                r.term.clone(),
                full(r.mean_treated),
                full(r.mean_control),
                full_opt(r.smd),
                full_opt(r.var_ratio),
                full(r.ecdf_mean),
                full(r.ecdf_max),
            ]);
        }
    }
    let mut files = vec![Artifact::text("tables/balance.csv", balance)];
    let mut coefs = csv_line(
        &["outcome", "subgroup", "term", "estimate", "std_error", "df", "statistic", "p_value"].map(String::from),
    );
    let effects_header: Vec<&str> = ["outcome", "subgroup"]
        .into_iter()
        .chain(EFFECT_COLUMNS)
        .chain(["model_std_error", "model_df", "model_p_value"])
        .collect();
    let mut effects = csv_line(&effects_header.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    for o in &ev.outcomes {
        let sub = o.subgroup.clone().unwrap_or_else(|| "all pupils".into());
        if let Some(model) = &o.model {
            for c in &model.coefficients() {
                coefs += &csv_line(&[
                    o.name.clone(),
                    sub.clone(),
                    c.term.clone(),
                    full(c.estimate),
                    full(c.std_error),
                    full_opt(c.df),
                    full(c.statistic),
                    full(c.p_value),
                ]);
            }
        }
        for e in &o.effects {
            let mut row = vec![o.name.clone(), sub.clone()];
            row.extend(effect_cells(e));
            row.extend([
                full_opt(e.model_based.as_ref().map(|m| m.std_error)),
                full_opt(e.model_based.as_ref().map(|m| m.df)),
                full_opt(e.model_based.as_ref().map(|m| m.p_value)),
            ]);
            effects += &csv_line(&row);
        }
    }
    files.push(Artifact::text("tables/coefficients.csv", coefs));
    files.push(Artifact::text("tables/effects.csv", effects));
    let mut missing =
        csv_line(&["outcome", "subgroup", "year", "group", "pupils", "with_outcome", "analysed"].map(String::from));
    for o in &ev.outcomes {
        for c in &o.counts.by_year {
            missing += &csv_line(&[
                o.name.clone(),
                o.subgroup.clone().unwrap_or_else(|| "all pupils".into()),
                c.year.to_string(),
                if c.treated { "treatment" } else { "contrast" }.into(),
                c.pupils.to_string(),
                c.with_outcome.to_string(),
                c.analysed.to_string(),
            ]);
        }
    }
    files.push(Artifact::text("tables/missing.csv", missing));
    if !ev.gap_closing.is_empty() {
        let header: Vec<String> =
            ["outcome", "subgroup", "variable"].into_iter().chain(EFFECT_COLUMNS).map(String::from).collect();
        let mut gaps = csv_line(&header);
        for g in &ev.gap_closing {
            for e in &g.effects {
                let mut row = vec![g.outcome.clone(), g.subgroup.clone(), g.variable.clone()];
                row.extend(effect_cells(e));
                gaps += &csv_line(&row);
            }
        }
        files.push(Artifact::text("tables/gap_closing.csv", gaps));
    }
    files
}

/// The CSV columns of one effect row, after the columns naming the analysis.
const EFFECT_COLUMNS: [&str; 9] =
    ["year", "estimate", "std_error", "df", "ci_low", "ci_high", "p_value", "effect_size", "inference"];

/// The cells of [`EFFECT_COLUMNS`] for one effect, at full precision.
fn effect_cells(e: &psmeval_evaluation::effects::Effect) -> [String; 9] {
    [
        period_label(&e.year),
        full(e.estimate),
        full(e.std_error),
        full(e.df),
        full(e.ci_low),
        full(e.ci_high),
        full(e.p_value),
        full(e.effect_size),
        e.inference.clone(),
    ]
}

/// Percentage with one decimal.
fn share(part: usize, whole: usize) -> String {
    if whole == 0 { "–".into() } else { format!("{:.1}%", 100.0 * part as f64 / whole as f64) }
}

/// Missing data by year and group for the all-pupils analyses, and a sentence on whether the shares
/// analysed differ between treatment and contrast schools by more than 5 percentage points.
fn missing_data(ev: &Evaluation, d: &mut Document) {
    let mut rows = Vec::new();
    let mut differing = Vec::new();
    let mut largest: f64 = 0.0;
    for o in ev.outcomes.iter().filter(|o| o.subgroup.is_none()) {
        let years: std::collections::BTreeSet<i64> = o.counts.by_year.iter().map(|c| c.year).collect();
        for y in years {
            let cell = |t: bool| o.counts.by_year.iter().find(|c| c.year == y && c.treated == t);
            let (lead, contrast) = (cell(true), cell(false));
            let rate = |c: Option<&psmeval_evaluation::sample::YearCounts>| {
                c.filter(|c| c.pupils > 0).map(|c| 100.0 * c.analysed as f64 / c.pupils as f64)
            };
            let diff = rate(lead).zip(rate(contrast)).map(|(a, b)| a - b);
            if let Some(dv) = diff {
                largest = largest.max(dv.abs());
                if dv.abs() > 5.0 {
                    differing.push(format!(
                        "{} in {} ({} of treatment-school pupils analysed against {} of contrast-school pupils)",
                        o.name,
                        year_label(y),
                        share(lead.map_or(0, |c| c.analysed), lead.map_or(0, |c| c.pupils)),
                        share(contrast.map_or(0, |c| c.analysed), contrast.map_or(0, |c| c.pupils)),
                    ));
                }
            }
            let mut row = vec![o.name.clone(), year_label(y)];
            for c in [lead, contrast] {
                row.push(c.map_or("0".into(), |c| count(c.pupils)));
                row.push(c.map_or("–".into(), |c| share(c.with_outcome, c.pupils)));
                row.push(c.map_or("–".into(), |c| share(c.analysed, c.pupils)));
            }
            row.push(diff.map_or("–".into(), |v| num(v, 1)));
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return;
    }
    d.p("Missing data by year and group (all pupils): pupils in matched schools, the share with the outcome \
         recorded and the share analysed (outcome and every covariate recorded), and the difference in the share \
         analysed, treatment minus contrast, in percentage points.");
    d.table(
        &[
            "Outcome",
            "Year",
            "Treatment pupils",
            "With outcome",
            "Analysed",
            "Contrast pupils",
            "With outcome",
            "Analysed",
            "Difference (points)",
        ],
        rows,
    );
    let complete = ev.outcomes.iter().all(|o| o.counts.by_year.iter().all(|c| c.analysed == c.pupils));
    d.p(if complete {
        "Every pupil of the matched schools has the outcome and every covariate recorded: no data are missing."
            .to_string()
    } else if differing.is_empty() {
        format!(
            "The shares analysed differ by at most {} percentage points between treatment and contrast schools in \
             every outcome and year, so differential dropout is unlikely to explain the results.",
            num(largest, 1)
        )
    } else {
        format!(
            "The shares analysed differ by more than 5 percentage points between treatment and contrast schools \
             in: {}. Pupils missing from one group more than the other can bias the comparison; the complete-case \
             analysis assumes the missing pupils are like the analysed ones given their school, year and \
             covariates.",
            differing.join("; ")
        )
    });
}

/// The sensitivity table and forest plot of the primary outcome's pooled effect.
fn sensitivity(ev: &Evaluation, d: &mut Document, files: &mut Vec<Artifact>, number: usize) -> Result<(), ReportError> {
    let Some(sens) = &ev.sensitivity else {
        return Ok(());
    };
    let binary = ev.outcomes.iter().any(|o| o.name == sens.outcome && o.family == Family::Binomial);
    let unit = if binary { "log-odds" } else { "outcome units" };
    d.h(2, format!("{number}. Sensitivity"));
    d.p(format!(
        "The pooled effect on {} (all pupils) with one choice of the analysis changed at a time: the random-effect \
         structure, model-based against design-based inference, the programme years before the 2016 assessment \
         change only, and a matched sample with a caliper of 0.2 SD. Estimates in {unit}; each row's effect size \
         divides by its own sample's SD.",
        sens.outcome
    ));
    d.table(
        &["Analysis", "What changed", "Estimate", "95% CI", "p", "Effect size", "Pupils", "Schools", "Inference"],
        sens.rows
            .iter()
            .map(|r| match &r.skipped {
                Some(why) => vec![
                    r.analysis.clone(),
                    format!("{} (not estimated: {why})", r.detail),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ],
                None => vec![
                    r.analysis.clone(),
                    r.detail.clone(),
                    num(r.estimate, 3),
                    format!("{} to {}", num(r.ci_low, 3), num(r.ci_high, 3)),
                    pval(r.p_value),
                    num(r.effect_size, 3),
                    count(r.n_pupils),
                    count(r.n_schools),
                    r.inference.clone(),
                ],
            })
            .collect(),
    );
    let rows: Vec<(String, f64, f64, f64)> = sens
        .rows
        .iter()
        .filter(|r| r.skipped.is_none() && r.ci_low.is_finite() && r.ci_high.is_finite())
        .map(|r| (r.analysis.clone(), r.estimate, r.ci_low, r.ci_high))
        .collect();
    if let Some(main) = sens.rows.first().filter(|r| r.skipped.is_none()) {
        let outside: Vec<&str> = sens
            .rows
            .iter()
            .skip(1)
            .filter(|r| r.skipped.is_none() && !(main.ci_low..=main.ci_high).contains(&r.estimate))
            .map(|r| r.analysis.as_str())
            .collect();
        d.p(if outside.is_empty() {
            "Every variant's estimate lies inside the main analysis's 95% confidence interval.".to_string()
        } else {
            format!(
                "The estimates of {} lie outside the main analysis's 95% confidence interval: the result depends on \
                 that choice.",
                outside.join(", ")
            )
        });
    }
    if !rows.is_empty() {
        let plot = RankedIntervals {
            title: format!("{}: sensitivity of the pooled effect", sens.outcome),
            x_label: format!("Pooled effect ({unit}), 95% CI"),
            rows,
        };
        d.blocks.push(figure(
            &plot,
            files,
            "sensitivity",
            format!(
                "The pooled effect on {} under each variant of the analysis, with its 95% confidence interval (each \
                 row's own inference, named in the table: design-based rows allow for clustering in schools and \
                 for cohort variation, model-based ones through the random effects only).",
                sens.outcome
            ),
        )?);
    }
    Ok(())
}

/// The gap-closing analyses: per outcome and subgroup, a table and a figure of the programme's effect on
/// the subgroup minus its effect on the other pupils.
fn gap_closing(ev: &Evaluation, d: &mut Document, files: &mut Vec<Artifact>) -> Result<(), ReportError> {
    if ev.gap_closing.is_empty() {
        return Ok(());
    }
    d.h(3, "Gap closing");
    d.p("Setting a subgroup's effect beside all pupils' does not test whether a gap closed. For each subgroup \
         defined by a 0/1 pupil characteristic, one model of all pupils adds the year × group × characteristic \
         interaction to the impact model; the difference-in-differences contrasts of its three-way terms are the \
         programme's effect on the subgroup's pupils minus its effect on the other pupils. A positive difference \
         means the subgroup gained more: for a disadvantaged group, the gap narrowed.");
    let start = ev.study.years.programme_start;
    for g in &ev.gap_closing {
        d.h(4, format!("{}: {} against other pupils", g.outcome, g.subgroup));
        if let Some(why) = &g.skipped {
            d.p(format!("Not analysed: {why}."));
            continue;
        }
        for note in &g.notes {
            d.p(format!("Note: {note}."));
        }
        d.p(format!(
            "Model: `{}` ({} pupils of whom {} with `{}` = 1, {} schools).",
            g.formula,
            count(g.n_pupils),
            count(g.n_subgroup_pupils),
            g.variable,
            count(g.n_schools)
        ));
        let digits = 3;
        d.table(
            &["Year", "Difference in effect", "SE", "df", "95% CI", "p", "Effect size"],
            g.effects
                .iter()
                .map(|e| {
                    vec![
                        match e.year {
                            Period::Year(y) => year_label(y),
                            Period::Pooled(_) => "Pooled".into(),
                        },
                        num(e.estimate, digits),
                        num(e.std_error, digits),
                        df_label(e.df, g.family),
                        format!("{} to {}", num(e.ci_low, digits), num(e.ci_high, digits)),
                        pval(e.p_value),
                        num(e.effect_size, 3),
                    ]
                })
                .collect(),
        );
        if let Some(p) = g.effects.iter().find(|e| e.year.is_pooled()) {
            d.p(format!(
                "Pooled over the programme years the programme's effect in the subgroup {} was {} {} than on the \
                 other pupils ({}; 95% CI {} to {}, p {}): {}.",
                g.subgroup,
                num(p.estimate.abs(), 3),
                if p.estimate >= 0.0 { "larger" } else { "smaller" },
                if g.family == Family::Binomial { "log-odds" } else { "outcome units" },
                num(p.ci_low, 3),
                num(p.ci_high, 3),
                p_phrase(p.p_value),
                if p.ci_low > 0.0 {
                    "the gap narrowed"
                } else if p.ci_high < 0.0 {
                    "the gap widened"
                } else {
                    "the data are consistent with no change in the gap"
                }
            ));
        }
        let fig = IntervalPlot {
            title: format!("{}: {} minus other pupils", g.outcome, g.subgroup),
            y_label: if g.family == Family::Binomial {
                "Difference in effect (log-odds)".into()
            } else {
                "Difference in effect".into()
            },
            series: vec![IntervalSeries {
                label: "Difference (95% CI)".into(),
                points: year_points(&g.effects),
                colour: TREATED,
            }],
            marker: Some((start as f64 - 0.5, "Programme starts".to_string())),
            zero_line: true,
        };
        d.blocks.push(figure(
            &fig,
            files,
            &format!("gap-{}-{}", slug(&g.outcome), slug(&g.subgroup)),
            format!(
                "Gap closing in {}: the programme's effect in the subgroup {} minus its effect on the other pupils in \
                 each programme year, with 95% confidence intervals ({}). Above zero, the subgroup gained more.",
                g.outcome,
                g.subgroup,
                interval_clause(g.inference.as_ref())
            ),
        )?);
    }
    Ok(())
}

/// Renders a figure as `figures/<name>.svg` and `.png` into `files` and returns its report block.
pub(crate) fn figure(
    fig: &impl plot::Figure,
    files: &mut Vec<Artifact>,
    name: &str,
    caption: String,
) -> Result<Block, ReportError> {
    let stem = format!("figures/{name}");
    let svg = plot::svg(fig, name)?;
    files.push(Artifact { path: format!("{stem}.png"), bytes: plot::png(fig, name)? });
    files.push(Artifact::text(format!("{stem}.svg"), svg.clone()));
    Ok(Block::Figure { stem, svg, caption })
}

/// The headline table (one row per analysed outcome and subgroup) and what its columns mean.
fn headline(ev: &Evaluation, d: &mut Document) {
    if ev.headline.is_empty() {
        return;
    }
    d.h(2, "Headline results");
    let rows = ev
        .headline
        .iter()
        .map(|h| {
            let name = match &h.subgroup {
                Some(sg) => format!("{} ({sg})", h.outcome),
                None => h.outcome.clone(),
            };
            vec![
                if h.primary { format!("{name} [primary]") } else { name },
                format!("{}; {}", count(h.pupils[0]), count(h.pupils[1])),
                format!("{}; {}", count(h.schools[0]), count(h.schools[1])),
                format!("{} ({} to {})", num(h.effect_size, 2), num(h.effect_size_low, 2), num(h.effect_size_high, 2)),
                h.months.map_or_else(|| "–".into(), |m| m.to_string()),
                pval(h.p_value),
                h.p_holm.map_or_else(|| "–".into(), pval),
                h.mdes.map_or_else(|| "–".into(), |m| num(m, 2)),
            ]
        })
        .collect();
    d.table(
        &[
            "Outcome",
            "Pupils (lead; contrast)",
            "Schools (lead; contrast)",
            "Effect size (95% CI)",
            "Months' progress",
            "p",
            "p (Holm)",
            "MDES",
        ],
        rows,
    );
    let primary = ev.headline.iter().find(|h| h.primary);
    let n_secondary = ev.headline.iter().filter(|h| !h.primary).count();
    let which = match primary {
        Some(h) => format!(
            "The primary analysis is {} for all pupils; the other {n_secondary} analyses are secondary",
            h.outcome
        ),
        None => format!(
            "No outcome is marked primary (`primary = true` in the study file), so all {n_secondary} analyses are \
             secondary"
        ),
    };
    d.p(format!(
        "Effect sizes are the pooled programme effect over the programme years in SD units (the effect-size \
         definition below), with the 95% CI and p value of the study's inference. {which}, and their p values are \
         Holm-adjusted together (family-wise 5%). Months' progress converts the effect size with the EEF Teaching \
         and Learning Toolkit's table (EEF project reports use a slightly different one); the MDES is the design's \
         analytic minimum detectable effect size at 80% power. Pupils are counted over all years analysed."
    ));
}

pub(crate) fn slug(s: &str) -> String {
    psmeval_evaluation::file_stem(s)
}

fn document(ev: &Evaluation, files: &mut Vec<Artifact>) -> Result<Document, ReportError> {
    let s = &ev.study;
    let m = &ev.matching;
    let mut d = Document {
        title: s.title.clone().unwrap_or_else(|| "Programme evaluation: matched comparison".into()),
        blocks: Vec::new(),
    };
    // Summary.
    d.h(2, "Summary");
    let mut summary = String::new();
    let _ = write!(
        summary,
        "{} of {} treatment schools were matched to {} contrast schools ({}:1 {} matching on the propensity score). ",
        m.n.matched_treated,
        m.n.all_treated,
        m.n.matched_control,
        s.matching.ratio,
        match s.matching.method {
            Method::Nearest => "nearest-neighbour",
            Method::Optimal => "optimal",
        }
    );
    for o in ev.outcomes.iter().filter(|o| o.subgroup.is_none()) {
        if let Some(p) = o.effects.iter().find(|e| matches!(e.year, Period::Pooled(_))) {
            let pp = o.percentage_points.iter().find(|e| e.year.is_pooled()).map_or(String::new(), |e| {
                format!(
                    "; {} percentage points (95% CI {} to {})",
                    num(e.estimate, 2),
                    num(e.ci_low, 2),
                    num(e.ci_high, 2)
                )
            });
            let _ = write!(
                summary,
                "{}: pooled change relative to contrast schools {} ({}95% CI {} to {}, p {}), effect size {}{pp}. ",
                o.name,
                num(p.estimate, 3),
                units(o),
                num(p.ci_low, 3),
                num(p.ci_high, 3),
                p_phrase(p.p_value),
                num(p.effect_size, 3)
            );
        } else if let Some(why) = &o.skipped {
            let _ = write!(summary, "{}: not analysed ({why}). ", o.name);
        }
    }
    d.p(summary.trim_end());
    headline(ev, &mut d);

    // Sample flow.
    d.h(2, "1. Sample");
    d.table(
        &["", "Treatment schools", "Contrast schools"],
        vec![
            vec!["All".into(), count(m.n.all_treated), count(m.n.all_control)],
            vec!["Discarded (common support)".into(), count(m.n.discarded_treated), count(m.n.discarded_control)],
            vec!["Matched".into(), count(m.n.matched_treated), count(m.n.matched_control)],
            vec!["Unmatched".into(), count(m.n.unmatched_treated), count(m.n.unmatched_control)],
            vec!["Effective sample size after matching".into(), num(m.n.ess_treated, 1), num(m.n.ess_control, 1)],
        ],
    );
    if m.unmatched_treated.is_empty() {
        d.p("Every treatment school found a match.");
    } else {
        d.p(format!(
            "Treatment schools without a match ({}): {}. They are excluded from the impact analysis.",
            m.unmatched_treated.len(),
            m.unmatched_treated.join(", ")
        ));
    }
    let mut rows = Vec::new();
    for o in &ev.outcomes {
        rows.push(vec![
            o.name.clone(),
            o.subgroup.clone().unwrap_or_else(|| "All pupils".into()),
            count(o.counts.eligible_rows),
            count(o.counts.matched_school_rows),
            count(o.counts.dropped_missing),
            count(o.counts.n_pupils),
            count(o.counts.n_schools),
            count(o.counts.n_treated_schools),
        ]);
    }
    d.p("Pupil samples, by outcome and subgroup: pupils in the years analysed, those in matched schools, those dropped for a missing outcome or covariate, and those analysed.");
    d.table(
        &[
            "Outcome",
            "Subgroup",
            "Pupils",
            "In matched schools",
            "Missing data",
            "Analysed",
            "Schools",
            "Treatment schools",
        ],
        rows,
    );
    missing_data(ev, &mut d);

    // Propensity model and balance.
    d.h(2, "2. Matching and balance");
    if let Some(p) = &m.propensity {
        d.p(format!(
            "Propensity model ({} link, glm-exact IRLS, {} iterations): {}",
            p.link_name, p.iterations, s.matching.formula
        ));
        d.table(
            &["Term", "Estimate", "SE", "z", "p"],
            p.coefficients
                .iter()
                .map(|c| {
                    vec![c.term.clone(), num(c.estimate, 4), num(c.std_error, 4), num(c.z_value, 2), pval(c.p_value)]
                })
                .collect(),
        );
        for w in &p.warnings {
            d.p(format!("Warning: {w}"));
        }
    } else if let Some(c) = &s.matching.distance_column {
        d.p(format!("The distance was taken from the column `{c}` of the school table."));
    }
    let after: std::collections::HashMap<&str, &BalanceRow> =
        m.balance.after.iter().map(|r| (r.term.as_str(), r)).collect();
    d.table(
        &[
            "Covariate",
            "Mean (treatment)",
            "Mean (contrast, before)",
            "SMD before",
            "Mean (contrast, after)",
            "SMD after",
            "Variance ratio after",
        ],
        m.balance
            .before
            .iter()
            .map(|b| {
                let a = after.get(b.term.as_str());
                vec![
                    b.term.clone(),
                    num(b.mean_treated, 3),
                    num(b.mean_control, 3),
                    opt(b.smd, 3),
                    a.map_or("–".into(), |a| num(a.mean_control, 3)),
                    a.map_or("–".into(), |a| opt(a.smd, 3)),
                    a.map_or("–".into(), |a| opt(a.var_ratio, 2)),
                ]
            })
            .collect(),
    );
    let love = LovePlot {
        title: "Covariate balance before and after matching".into(),
        rows: m
            .balance
            .before
            .iter()
            .map(|b| (b.term.clone(), b.smd, after.get(b.term.as_str()).and_then(|a| a.smd)))
            .collect(),
    };
    d.blocks.push(figure(
        &love,
        files,
        "love",
        "Love plot: standardized mean differences between treatment and contrast schools for each covariate, \
         before (open circles) and after (filled) matching. Differences within ±0.1 (dashed lines) are \
         conventionally taken as balanced."
            .into(),
    )?);
    let unit = |treated: bool, after: bool| -> Vec<(f64, f64)> {
        m.units
            .iter()
            .filter(|u| u.treated == treated && (!after || u.weight > 0.0))
            .map(|u| (u.distance, if after { u.weight } else { 1.0 }))
            .collect()
    };
    let dist = DistributionPlot {
        title: "Propensity scores of treatment and contrast schools".into(),
        x_label: m.distance_label.clone(),
        panels: vec![
            DistributionPanel {
                title: "Before matching".into(),
                treated: unit(true, false),
                control: unit(false, false),
            },
            DistributionPanel {
                title: "After matching (weighted)".into(),
                treated: unit(true, true),
                control: unit(false, true),
            },
        ],
        groups: ("Treatment".into(), "Contrast".into()),
    };
    d.blocks.push(figure(
        &dist,
        files,
        "scores",
        "Distribution of the matching distance in treatment and contrast schools before and after matching. \
         After matching the contrast schools' distribution should resemble the treatment schools'."
            .into(),
    )?);

    // Outcomes.
    d.h(2, "3. Impact");
    d.p(format!(
        "Each outcome is modelled with a multilevel difference-in-differences model (pupils in schools; the formula \
         is given with each outcome, `group` = 1 for treatment schools). The effect in a programme year is the \
         change in the gap between treatment and contrast schools relative to the average gap in the years before \
         the programme ({} onwards is the programme period); for binary outcomes the gap is in log-odds, so the \
         effect is a log odds ratio. Effect sizes divide by the {}.",
        year_label(s.years.programme_start),
        match s.effect_size.definition {
            EffectSizeDefinition::Eef =>
                "total SD (between-school and cohort intercept variances plus pupil-level variance) of the model with \
                 the same design terms and random effects but without pupil covariates (EEF's convention); for binary \
                 outcomes, the SD of the adjusted logistic model's latent outcome (the variance of its covariates' \
                 linear predictor plus the school intercept variance plus π²/3), so that the log-odds effect and \
                 its SD are on one latent scale",
            EffectSizeDefinition::Residual =>
                "pupil-level SD (π/√3 for binary outcomes) of the model without pupil covariates",
        }
    ));
    for o in ev.outcomes.iter().filter(|o| o.subgroup.is_none()) {
        outcome_section(&mut d, ev, o, files)?;
    }
    if !s.subgroups.is_empty() {
        d.h(2, "4. Subgroups");
        let mut rows = Vec::new();
        for o in &ev.outcomes {
            let pooled = o.effects.iter().find(|e| matches!(e.year, Period::Pooled(_)));
            rows.push(vec![
                o.name.clone(),
                o.subgroup.clone().unwrap_or_else(|| "All pupils".into()),
                count(o.n_pupils),
                pooled.map_or("–".into(), |e| num(e.estimate, 3)),
                pooled.map_or("–".into(), |e| format!("{} to {}", num(e.ci_low, 3), num(e.ci_high, 3))),
                pooled.map_or("–".into(), |e| pval(e.p_value)),
                pooled.map_or("–".into(), |e| num(e.effect_size, 3)),
            ]);
        }
        d.p("Pooled programme-period effects for all pupils and each subgroup.");
        d.table(&["Outcome", "Subgroup", "n", "Estimate", "95% CI", "p", "Effect size"], rows);
        for o in ev.outcomes.iter().filter(|o| o.subgroup.is_some()) {
            for note in &o.notes {
                d.p(format!("Note ({}, {}): {note}.", o.name, o.subgroup.as_deref().unwrap_or_default()));
            }
            if let Some(why) = &o.skipped {
                d.p(format!("Not analysed ({}, {}): {why}.", o.name, o.subgroup.as_deref().unwrap_or_default()));
            }
        }
        gap_closing(ev, &mut d, files)?;
    }
    sensitivity(ev, &mut d, files, if s.subgroups.is_empty() { 4 } else { 5 })?;

    d.h(2, "Reproducibility");
    d.p(format!(
        "Produced by psmeval {} from the study file below. Input files: {}. Every number in this report is in \
         results.json; the same study and data give the same results.json byte for byte.",
        ev.psmeval_version,
        ev.inputs
            .iter()
            .map(|i| format!("{} ({} rows, sha256 {})", i.path, count(i.rows), &i.sha256[..16]))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    d.blocks.push(Block::Code(ev.study_file.clone()));
    Ok(d)
}

/// What the cohort (school × year) variance component means, with the shares of the school, cohort and
/// pupil variances (for a logistic model on the latent scale, where the pupil variance is the logistic
/// distribution's π²/3); `None` when the model has no cohort term.
fn cohort_sentence(components: &[VarianceComponent], family: Family, school: &str, year: &str) -> Option<String> {
    let cohort_group = format!("{school}:{year}");
    let intercept = |g: &str| {
        components.iter().find(|v| v.group == g && v.term.as_deref() == Some("(Intercept)")).map(|v| v.variance)
    };
    let cohort = intercept(&cohort_group)?;
    let school_v = intercept(school).unwrap_or(0.0);
    let (pupil, scale) = match family {
        Family::Gaussian => (components.iter().find(|v| v.term.is_none()).map_or(f64::NAN, |v| v.variance), ""),
        Family::Binomial => (
            std::f64::consts::PI.powi(2) / 3.0,
            " (on the latent log-odds scale, where the pupil-level variance is the logistic distribution's π²/3)",
        ),
    };
    let total = school_v + cohort + pupil;
    Some(format!(
        "The cohort variance ({cohort_group}: {}, SD {}) measures how much a school's results move from one year to \
         the next around its long-run level: pupils of one school in one year share that deviation. Of the \
         variance left after covariates{scale}, {:.1}% lies between schools, {:.1}% between cohorts within \
         schools and {:.1}% between pupils. {}",
        num(cohort, 4),
        num(cohort.sqrt(), 4),
        100.0 * school_v / total,
        100.0 * cohort / total,
        100.0 * pupil / total,
        if cohort < 1e-8 * total.max(f64::MIN_POSITIVE) {
            "It is estimated at zero (a singular fit): these data show no cohort variation beyond the pupils'."
        } else {
            "Without this term the model would treat a school's pupils as independent from year to year and \
             overstate the precision of the year-by-group contrasts."
        }
    ))
}

fn outcome_section(
    d: &mut Document,
    ev: &Evaluation,
    o: &OutcomeResult,
    files: &mut Vec<Artifact>,
) -> Result<(), ReportError> {
    let s = &ev.study;
    d.h(3, o.name.clone());
    if let Some(why) = &o.skipped {
        d.p(format!("Not analysed: {why}."));
        return Ok(());
    }
    for note in &o.notes {
        d.p(format!("Note: {note}."));
    }
    let unit = if o.standardized { "outcome standardized within year (SD units)" } else { "outcome" };
    let stem = slug(&o.name);
    let series = |treated: bool| IntervalSeries {
        label: if treated { "Treatment schools".into() } else { "Matched contrast schools".into() },
        points: o
            .trend
            .iter()
            .filter(|c| c.cell.1 == treated)
            .map(|c| (c.cell.0 as f64, c.mean, c.ci_low, c.ci_high))
            .collect(),
        colour: if treated { TREATED } else { CONTROL },
    };
    let marker = Some((s.years.programme_start as f64 - 0.5, "Programme starts".to_string()));
    let trend = IntervalPlot {
        title: format!("{}: mean by year", o.name),
        y_label: format!("Mean {unit}"),
        series: vec![series(true), series(false)],
        marker: marker.clone(),
        zero_line: false,
    };
    d.blocks.push(figure(
        &trend,
        files,
        &format!("trend-{stem}"),
        format!(
            "Mean {} by year in treatment and matched contrast schools, with 95% confidence intervals that allow \
             for pupils being clustered in schools. The dashed line marks the start of the programme.",
            o.name
        ),
    )?);
    d.p("The intervals of this figure are for each group's mean level in a year, which varies widely from school \
         to school. The effects below compare the change in the same schools over time, from which each school's \
         persistent level cancels out, so their intervals are much narrower: overlapping intervals here say \
         nothing about whether the effect differs from zero."
        .to_string());
    let robust = o.effects.iter().any(|e| e.model_based.is_some());
    let mut header = vec!["Year", "Estimate", "SE", "df", "95% CI", "p", "Effect size"];
    if robust {
        header.extend(["Model SE", "Model df"]);
    }
    d.table(
        &header,
        o.effects
            .iter()
            .map(|e| {
                let mut row = vec![
                    match e.year {
                        Period::Year(y) => year_label(y),
                        Period::Pooled(_) => "Pooled".into(),
                    },
                    num(e.estimate, 3),
                    num(e.std_error, 3),
                    df_label(e.df, o.family),
                    format!("{} to {}", num(e.ci_low, 3), num(e.ci_high, 3)),
                    pval(e.p_value),
                    num(e.effect_size, 3),
                ];
                if robust {
                    row.push(e.model_based.as_ref().map_or("–".into(), |m| num(m.std_error, 3)));
                    row.push(e.model_based.as_ref().map_or("–".into(), |m| df_label(m.df, o.family)));
                }
                row
            })
            .collect(),
    );
    if let Some(i) = &o.inference {
        d.p(inference_sentence(i, o, &s.inference));
    }
    if let Some(m) = &o.analytic_mdes {
        d.p(format!(
            "Analytic minimum detectable effect (Bloom's formula, 80% power, 5% two-sided): {} total SD, from {} \
             schools ({:.1}% treated), {} pupils per school in the programme years, ICC {} and covariate R² {} \
             (school) and {} (pupil) from the fitted models. It treats the design as a post-test comparison of \
             schools; the difference-in-differences removes stable school differences, so it is conservative here \
             (`psmeval power` simulates the design as analysed).",
            num(m.mdes, 3),
            count(m.schools),
            100.0 * m.treated_share,
            num(m.pupils_per_school, 1),
            num(m.icc, 3),
            num(m.r2_school, 2),
            num(m.r2_pupil, 2)
        ));
    }
    if !o.percentage_points.is_empty() {
        d.p(format!(
            "The same effects in percentage points of pupils reaching the outcome (g-computation from the logistic \
             model: treatment-school pupils of each programme year predicted with and without the programme, \
             their own schools' effects included; delta-method standard errors{}).",
            if o.percentage_points.iter().any(|e| e.inference == "CR2") {
                ", cluster-robust CR2 from the logistic model's working linear model, with Bell–McCaffrey df"
            } else {
                " from the model's own covariance (Wald z)"
            }
        ));
        d.table(
            &["Year", "Percentage points", "SE", "df", "95% CI", "p"],
            o.percentage_points
                .iter()
                .map(|e| {
                    vec![
                        match e.year {
                            Period::Year(y) => year_label(y),
                            Period::Pooled(_) => "Pooled".into(),
                        },
                        num(e.estimate, 2),
                        num(e.std_error, 2),
                        df_label(e.df, o.family),
                        format!("{} to {}", num(e.ci_low, 2), num(e.ci_high, 2)),
                        pval(e.p_value),
                    ]
                })
                .collect(),
        );
    }
    let event = IntervalPlot {
        title: format!("{}: programme effect by year", o.name),
        y_label: if o.family == Family::Binomial {
            "Change in log-odds gap vs pre-programme years".into()
        } else {
            "Change in gap vs pre-programme years".into()
        },
        series: vec![IntervalSeries {
            label: "Estimated effect (95% CI)".into(),
            points: year_points(&o.effects),
            colour: TREATED,
        }],
        marker,
        zero_line: true,
    };
    d.blocks.push(figure(
        &event,
        files,
        &format!("effects-{stem}"),
        format!(
            "Estimated programme effect on {} in each programme year: the change in the gap between treatment and \
             contrast schools relative to the pre-programme years, with 95% confidence intervals ({}). Zero means \
             no change.",
            o.name,
            interval_clause(o.inference.as_ref())
        ),
    )?);
    if let Some(reference) = o.event_reference
        && !o.event_study.is_empty()
    {
        let mut points: Vec<(f64, f64, f64, f64)> = year_points(&o.event_study);
        points.push((reference as f64, 0.0, 0.0, 0.0));
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let study = IntervalPlot {
            title: format!("{}: event study (gap relative to {})", o.name, year_label(reference)),
            y_label: if o.family == Family::Binomial {
                format!("Change in log-odds gap since {}", year_label(reference))
            } else {
                format!("Change in gap since {}", year_label(reference))
            },
            series: vec![IntervalSeries { label: "Estimate (95% CI)".into(), points, colour: TREATED }],
            marker: Some((s.years.programme_start as f64 - 0.5, "Programme starts".to_string())),
            zero_line: true,
        };
        d.blocks.push(figure(
            &study,
            files,
            &format!("event-{stem}"),
            format!(
                "Event study of {}: the change in the gap between treatment and contrast schools since {} (the last \
                 year before the programme, fixed at 0), every year with its 95% confidence interval ({}). Before \
                 the programme the estimates should be near 0 if the two groups were on parallel paths.",
                o.name,
                year_label(reference),
                event_clause(o.inference.as_ref())
            ),
        )?);
        if let Some(t) = &o.pretrend {
            d.p(format!(
                "Pre-trend test (parallel paths before the programme: all pre-programme event-study estimates 0; {}): \
                 F = {} on {} and {} df, p {}. {}",
                t.method,
                num(t.statistic, 2),
                t.df_num,
                if t.df_den.is_finite() { format::df(t.df_den) } else { "∞".into() },
                p_phrase(t.p_value),
                if t.p_value < 0.05 {
                    "The groups' paths differed before the programme, so the difference-in-differences estimates \
                     may be biased; treat them with caution."
                } else {
                    "There is no evidence against parallel pre-programme paths (which does not prove them)."
                }
            ));
        }
    }
    if let Some(model) = &o.model {
        d.p(format!(
            "Model `{}`: {} observations, {} schools; {}{}.",
            o.formula,
            count(o.n_pupils),
            count(o.n_schools),
            if model.converged() { "converged" } else { "did NOT converge — treat with caution" },
            if model.singular() { "; singular fit (a variance component is estimated at zero)" } else { "" }
        ));
        d.table(
            &["Term", "Estimate", "SE", "df", model.statistic_name(), "p"],
            model
                .coefficients()
                .iter()
                .map(|c| {
                    vec![
                        c.term.clone(),
                        num(c.estimate, 4),
                        num(c.std_error, 4),
                        c.df.map_or("–".into(), format::df),
                        num(c.statistic, 2),
                        pval(c.p_value),
                    ]
                })
                .collect(),
        );
        d.table(
            &["Group", "Term", "Variance", "SD"],
            model
                .variance_components()
                .iter()
                .map(|v| {
                    vec![v.group.clone(), v.term.clone().unwrap_or_default(), num(v.variance, 4), num(v.std_dev, 4)]
                })
                .collect(),
        );
        if let Some(icc) = o.icc {
            d.p(format!(
                "Intraclass correlation (share of variance between schools, after covariates): {}.",
                num(icc, 3)
            ));
        }
        if let Some(sentence) =
            cohort_sentence(model.variance_components(), model.family(), &s.data.school_id, &s.data.year)
        {
            d.p(sentence);
        }
        if !o.school_effects.is_empty() {
            let cat = CaterpillarPlot {
                title: format!("{}: school effects", o.name),
                effects: o.school_effects.iter().map(|e| (e.estimate, e.cond_sd, e.treated)).collect(),
                highlight_label: "Treatment schools".into(),
            };
            d.blocks.push(figure(
                &cat,
                files,
                &format!("schools-{stem}"),
                format!(
                    "School effects on {} (the model's conditional modes of the school intercepts) with 95% intervals \
                     of ±1.96 conditional SDs (they allow for each school's number of pupils, not for the uncertainty \
                     of the model's parameters), ranked; treatment schools highlighted.",
                    o.name
                ),
            )?);
        }
    }
    Ok(())
}
