//! The report of a power run ([`PowerResults`]): `power.csv` (every analysis × effect with Monte Carlo
//! SEs), one power-curve figure per outcome (SVG and PNG), and `report.md` / `report.html` with the MDES, the
//! rejection rate and coverage at no effect, and what the intervals account for. Computes nothing.

use psmeval_evaluation::design::{ComponentSds, Design, Source};
use psmeval_evaluation::power::{AnalysisPower, PowerPoint, PowerResults, TARGET_POWER};
use psmeval_evaluation::study::{DesignFrom, Family};

use crate::document::Document;
use crate::evaluation::{figure, slug};
use crate::format::{count, csv_line, full, full_opt, num, opt};
use crate::plot::{CurveSeries, PALETTE, PowerCurve, year_label};
use crate::{Artifact, ReportError};

/// Every output of a power run: `power.csv`, `figures/power-*.{svg,png}`, `report.md`, `report.html`.
pub fn render_power(res: &PowerResults) -> Result<Vec<Artifact>, ReportError> {
    let mut files = vec![Artifact::text("power.csv", csv(res))];
    let doc = document(res, &mut files)?;
    files.push(Artifact::text("report.md", doc.markdown()));
    files.push(Artifact::text("report.html", doc.html()));
    Ok(files)
}

/// Where the simulated design came from: the study's data (with the calibration), its `[simulation]` table
/// or the simulator's defaults.
fn design_basis(d: &Design) -> String {
    let named = |source: Source| -> Vec<String> {
        d.basis.sources.iter().filter(|(_, s)| **s == source).map(|(f, _)| format!("`{f}`")).collect()
    };
    let list = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let sources = format!(
        "set in the [simulation] table: {}; the simulator's defaults: {}",
        list(named(Source::Study)),
        list(named(Source::Default))
    );
    let Some(fit) = &d.basis.data_fit else {
        return match d.basis.from {
            DesignFrom::Defaults => {
                format!("The design is not estimated from data (`from = \"defaults\"`): {sources}.")
            }
            DesignFrom::Data => format!(
                "The [simulation] table sets every value the study's data could give, so no data were read: \
                 {sources}."
            ),
        };
    };
    let mut t = format!(
        "The design was estimated from the study's own data: its school table has {} schools, {} of them lead \
         schools, and {} pupils per school and year{}.",
        count(fit.schools),
        count(fit.leads),
        num(fit.cohort_size, 1),
        fit.outcome.as_deref().map(|o| format!(" in {o}")).unwrap_or_default(),
    );
    if let (Some(o), Some(f), Some(target)) = (&fit.outcome, &fit.formula, &fit.fitted) {
        t += &format!(
            " The study's impact model of {o} fitted to the data (`{f}`) has SDs {} (analysed scale).",
            sds(target)
        );
        if let Some(p) = &fit.pilot {
            t += &format!(
                " The simulator's latent SDs were calibrated so that the same model fitted to a simulated pilot \
                 population of the design gives the same SDs ({} after {} calibration round{}).",
                sds(p),
                fit.calibration_rounds,
                if fit.calibration_rounds == 1 { "" } else { "s" }
            );
        }
        if let Some(total) = fit.latent_total_sd {
            t += &format!(
                " The pilot's latent score has total SD {}: the simulated effects are in latent units, which are \
                 pupil SDs only where this is near 1.",
                num(total, 3)
            );
        }
    }
    for n in &fit.notes {
        t += &format!(" Note: {n}.");
    }
    t + &format!(
        " From the data: {}; {sources} (a programme effect's heterogeneity and a pre-trend are assumptions, never \
         estimated).",
        list(named(Source::Data)),
    )
}

fn sds(c: &ComponentSds) -> String {
    let mut parts = Vec::new();
    for (name, v) in [("school", c.school), ("slope", c.slope), ("cohort", c.cohort), ("pupil", Some(c.pupil))] {
        if let Some(v) = v {
            parts.push(format!("{name} {}", num(v, 3)));
        }
    }
    parts.join(", ")
}

fn label(a: &AnalysisPower) -> String {
    match &a.analysis.subgroup {
        Some(s) => format!("{}, {s}", a.analysis.outcome),
        None => a.analysis.outcome.clone(),
    }
}

fn csv(res: &PowerResults) -> String {
    let mut out = csv_line(
        &[
            "outcome",
            "subgroup",
            "effect",
            "replicates",
            "failed",
            "power",
            "power_mcse",
            "mean_truth",
            "mean_estimate",
            "bias",
            "bias_mcse",
            "empirical_se",
            "empirical_se_mcse",
            "mean_se",
            "mean_se_mcse",
            "coverage",
            "coverage_mcse",
            "model_power",
            "model_mean_se",
            "model_coverage",
        ]
        .map(String::from),
    );
    for a in &res.analyses {
        for p in &a.effects {
            let m = p.model_based.as_ref();
            out += &csv_line(&[
                a.analysis.outcome.clone(),
                a.analysis.subgroup.clone().unwrap_or_default(),
                full(p.effect),
                p.replicates.to_string(),
                p.failed.to_string(),
                full(p.power),
                full(p.power_mcse),
                full_opt(p.mean_truth),
                full(p.mean_estimate),
                full_opt(p.bias),
                full_opt(p.bias_mcse),
                full(p.empirical_se),
                full(p.empirical_se_mcse),
                full(p.mean_se),
                full(p.mean_se_mcse),
                full_opt(p.coverage),
                full_opt(p.coverage_mcse),
                full_opt(m.map(|m| m.power)),
                full_opt(m.map(|m| m.mean_se)),
                full_opt(m.and_then(|m| m.coverage)),
            ]);
        }
    }
    out
}

fn pct(x: f64) -> String {
    if x.is_finite() { format!("{:.1}%", 100.0 * x) } else { "–".into() }
}

fn pct_mc(x: f64, se: f64) -> String {
    if x.is_finite() { format!("{} ({})", pct(x), num(100.0 * se, 1)) } else { "–".into() }
}

fn document(res: &PowerResults, files: &mut Vec<Artifact>) -> Result<Document, ReportError> {
    let s = &res.settings;
    let d = &s.design;
    let mut doc = Document {
        title: format!("Power by simulation: {}", res.title.as_deref().unwrap_or("study")),
        ..Default::default()
    };
    doc.p(format!(
        "The study's matching and analysis were run on {} simulated populations at each of {} programme effects \
         ({}; latent pupil SD units), {} runs in all, seed {}. Each population has {} schools, {} of them lead \
         schools, {} to {} with the programme from {}, {} pupils per school, year and key stage on average, \
         latent SDs of school intercepts {}, school slopes per year {}, cohort (school × year × key stage) shocks \
         {} and pupils {}, programme-effect SD across lead schools {} and lead-school pre-trend {} per year. \
         Replicate r uses the same population at every effect, so the power curve is smooth. Inference: {}.",
        count(res.replicates as usize),
        s.effects.len(),
        s.effects.iter().map(|e| num(*e, 3)).collect::<Vec<_>>().join(", "),
        count(res.replicates as usize * s.effects.len()),
        s.seed,
        count(d.schools),
        count(d.leads),
        year_label(d.first_year),
        year_label(d.last_year),
        year_label(d.programme_start),
        num(d.cohort_size, 1),
        num(d.school_sd, 3),
        num(d.slope_sd, 3),
        num(d.cohort_sd, 3),
        num(d.pupil_sd, 3),
        num(d.effect_sd, 2),
        num(d.pretrend, 2),
        res.inference,
    ));
    doc.p(design_basis(d));
    doc.p("Power is the share of replicates whose pooled effect has p < 0.05; at no effect it is the rejection rate, \
         which should be near 5%. Coverage is the share of 95% intervals containing the population's true effect \
         on the analysed scale (lead-school pupils' outcomes with minus without the programme, in standardized \
         units); banded and clamped scores make it smaller than the simulated latent effect. Figures in brackets \
         are Monte Carlo standard errors, in percentage points.");

    doc.h(2, "Minimum detectable effect");
    let rows = res
        .analyses
        .iter()
        .map(|a| {
            vec![
                label(a),
                opt(a.mdes.effect, 3),
                opt(a.mdes.analysed, 3),
                opt(a.analytic_mdes, 3),
                a.effects.iter().find(|p| p.effect == 0.0).map_or("–".into(), |p| pct_mc(p.power, p.power_mcse)),
                a.effects
                    .iter()
                    .find(|p| p.effect == 0.0)
                    .and_then(|p| Some(pct_mc(p.coverage?, p.coverage_mcse?)))
                    .unwrap_or_else(|| "–".into()),
                a.mdes.note.clone(),
            ]
        })
        .collect();
    doc.table(
        &["Analysis", "MDES (latent SD)", "MDES (analysed scale)", "Rejection rate at 0", "Coverage at 0", "How read"],
        rows,
    );
    doc.p(format!(
        "The MDES is the effect at which {:.0}% of replicates reject no effect at the 5% level, interpolated \
         linearly between the simulated effects. Bloom's analytic MDES (mean over the replicates' analyses; \
         linear outcomes, total-SD units) treats the design as a post-test comparison of treated and contrast \
         schools with the ICC and R² of the fitted models; the difference-in-differences removes stable school \
         differences, so it is conservative for this design, and the simulated MDES is the one that accounts \
         for the design as analysed.",
        100.0 * TARGET_POWER
    ));

    // One figure per outcome, one curve per subgroup.
    let mut outcomes: Vec<&str> = Vec::new();
    for a in &res.analyses {
        if !outcomes.contains(&a.analysis.outcome.as_str()) {
            outcomes.push(&a.analysis.outcome);
        }
    }
    for o in outcomes {
        let series: Vec<CurveSeries> = res
            .analyses
            .iter()
            .filter(|a| a.analysis.outcome == o)
            .enumerate()
            .map(|(k, a)| {
                let mut pts: Vec<(f64, f64, f64, f64)> = a
                    .effects
                    .iter()
                    .filter(|p| p.power.is_finite())
                    .map(|p| (p.effect, p.power, p.power - 1.96 * p.power_mcse, p.power + 1.96 * p.power_mcse))
                    .collect();
                pts.sort_by(|x, y| x.0.total_cmp(&y.0));
                CurveSeries {
                    label: a.analysis.subgroup.clone().unwrap_or_else(|| "All pupils".into()),
                    points: pts,
                    colour: PALETTE[k % PALETTE.len()],
                }
            })
            .collect();
        let fig = PowerCurve {
            title: format!("Power: {o}"),
            x_label: "Simulated programme effect (latent pupil SD)".into(),
            series,
            target: TARGET_POWER,
            alpha: 0.05,
        };
        let block = figure(
            &fig,
            files,
            &format!("power-{}", slug(o)),
            format!(
                "Power to detect the programme's pooled effect on {o} at the 5% level, by simulated effect, with \
                 95% Monte Carlo intervals; dashed: {:.0}% power, dotted: the nominal 5%.",
                100.0 * TARGET_POWER
            ),
        )?;
        doc.blocks.push(block);
    }

    doc.h(2, "By analysis and effect");
    for a in &res.analyses {
        doc.h(3, label(a));
        let binary = a.analysis.family == Family::Binomial;
        let rows = a.effects.iter().map(point_row).collect();
        doc.table(
            &[
                "Effect",
                "Replicates",
                "Power",
                "True effect",
                "Mean estimate",
                "Bias",
                "Empirical SE",
                "Mean SE",
                "Coverage",
                "Model-based coverage",
            ],
            rows,
        );
        if binary {
            doc.p("For this binary outcome the estimate is the percentage-point effect (g-computation from the \
                 logistic model); its true value is the change in the share of lead-school pupils reaching the \
                 standard, in percentage points, so the MDES on the analysed scale is in percentage points too.");
        }
    }
    let failed: usize = res.failures.len();
    if failed > 0 {
        doc.h(2, "Replicates without an estimate");
        let mut reasons: Vec<(String, usize)> = Vec::new();
        for f in &res.failures {
            match reasons.iter_mut().find(|(r, _)| *r == f.reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((f.reason.clone(), 1)),
            }
        }
        doc.table(&["Reason", "Count"], reasons.into_iter().map(|(r, n)| vec![r, count(n)]).collect());
    }
    Ok(doc)
}

fn point_row(p: &PowerPoint) -> Vec<String> {
    vec![
        num(p.effect, 3),
        format!(
            "{}{}",
            count(p.replicates),
            if p.failed > 0 { format!(" ({} failed)", p.failed) } else { String::new() }
        ),
        pct_mc(p.power, p.power_mcse),
        opt(p.mean_truth, 3),
        num(p.mean_estimate, 3),
        match (p.bias, p.bias_mcse) {
            (Some(b), Some(s)) => format!("{} ({})", num(b, 4), num(s, 4)),
            _ => "–".into(),
        },
        num(p.empirical_se, 4),
        num(p.mean_se, 4),
        match (p.coverage, p.coverage_mcse) {
            (Some(c), Some(s)) => pct_mc(c, s),
            _ => "–".into(),
        },
        p.model_based.as_ref().and_then(|m| m.coverage).map_or("–".into(), pct),
    ]
}
