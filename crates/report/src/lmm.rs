//! Renderings of a mixed-model fit ([`ModelRecord`]): lme4-like summary text for linear and logistic
//! models, and conditional modes as CSV.

use std::fmt::Write as _;

use psmeval_evaluation::ModelRecord;
use psmeval_evaluation::record::{LinearModelRecord, LogisticModelRecord, dropped_message};
use psmeval_multilevel::ConditionalModes;

use crate::format::{num, pval};

/// An lme4-like summary of a fit (`summary(lmer(...))` with lmerTest's df, or `summary(glmer(...))`).
pub fn summary_text(model: &ModelRecord) -> String {
    match model {
        ModelRecord::Linear(m) => linear_summary(m),
        ModelRecord::Logistic(m) => logistic_summary(m),
    }
}

fn linear_summary(m: &LinearModelRecord) -> String {
    let satterthwaite = m.df_method.is_satterthwaite();
    let mut s = format!(
        "Linear mixed model fit by {} ({})\nFormula: {}\n\n",
        if m.reml { "REML" } else { "maximum likelihood" },
        if satterthwaite { "Satterthwaite df" } else { "t tests without df, as lme4" },
        m.formula
    );
    let _ = writeln!(s, "Linear mixed model fit by {}", if m.reml { "REML" } else { "maximum likelihood" });
    if m.reml {
        let _ = writeln!(s, "REML criterion at convergence: {:.1}", m.criterion);
    } else {
        let _ = writeln!(s, "{:>10} {:>10} {:>10} {:>10}", "AIC", "BIC", "logLik", "deviance");
        let _ = writeln!(s, "{:>10.1} {:>10.1} {:>10.1} {:>10.1}", m.aic, m.bic, m.log_likelihood, m.criterion);
    }
    let _ = writeln!(s, "\nRandom effects:");
    let _ = writeln!(s, " {:<12} {:<12} {:>12} {:>10}", "Groups", "Name", "Variance", "Std.Dev.");
    for re in &m.random_effects {
        let _ = writeln!(
            s,
            " {:<12} {:<12} {:>12.4} {:>10.4}",
            re.group,
            re.term.as_deref().unwrap_or(""),
            re.variance,
            re.std_dev
        );
    }
    for c in &m.correlations {
        let _ = writeln!(s, " Corr({}: {}, {}) = {:.3}", c.group, c.term1, c.term2, c.correlation);
    }
    let groups: Vec<String> = m.groups.iter().map(|(g, n)| format!("{g}, {n}")).collect();
    let _ = writeln!(s, "Number of obs: {}, groups:  {}", m.n_obs, groups.join("; "));
    let _ = writeln!(s, "\nFixed effects:");
    if satterthwaite {
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>12} {:>10} {:>9} {:>10}",
            "", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"
        );
    } else {
        let _ = writeln!(s, "{:<20} {:>12} {:>12} {:>9}", "", "Estimate", "Std. Error", "t value");
    }
    for fe in &m.fixed_effects {
        if satterthwaite {
            let _ = writeln!(
                s,
                "{:<20} {:>12.5} {:>12.5} {:>10.3} {:>9.3} {:>10.3e}",
                fe.term, fe.estimate, fe.std_error, fe.df, fe.t_value, fe.p_value
            );
        } else {
            let _ = writeln!(s, "{:<20} {:>12.5} {:>12.5} {:>9.3}", fe.term, fe.estimate, fe.std_error, fe.t_value);
        }
    }
    if m.singular {
        let _ = writeln!(s, "boundary (singular) fit: see help('isSingular')");
    }
    if !m.converged {
        let _ = writeln!(s, "warning: the optimizer did not report convergence ({})", m.optimizer.status);
    }
    if let Some(r) = &m.robust {
        let _ = writeln!(
            s,
            "\nCluster-robust ({}) fixed effects, {} clusters of `{}` (Bell-McCaffrey Satterthwaite df):",
            r.kind, r.clusters, r.cluster
        );
        let _ = writeln!(
            s,
            "{:<20} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "", "Estimate", "Model SE", "Robust SE", "df", "Pr(>|t|)"
        );
        for (fe, rb) in m.fixed_effects.iter().zip(&r.fixed_effects) {
            let _ = writeln!(
                s,
                "{:<20} {:>12.5} {:>12.5} {:>12.5} {:>10.3} {:>10.3e}",
                rb.term, rb.estimate, fe.std_error, rb.std_error, rb.df, rb.p_value
            );
        }
    }
    let _ = writeln!(s);
    if let Some(msg) = dropped_message(&m.dropped_columns) {
        let _ = writeln!(s, "{msg}");
    }
    if m.n_dropped > 0 {
        let _ = writeln!(s, "{} rows with missing values dropped", m.n_dropped);
    }
    s
}

fn logistic_summary(m: &LogisticModelRecord) -> String {
    let mut s = format!(
        "Generalized linear mixed model fit by maximum likelihood ({}) [glmerMod]\n Family: binomial ( logit )\nFormula: {}\n\n",
        if m.nagq <= 1 {
            "Laplace Approximation".to_string()
        } else {
            format!("Adaptive Gauss-Hermite Quadrature, nAGQ = {}", m.nagq)
        },
        m.formula
    );
    let _ = writeln!(
        s,
        "     AIC      BIC   logLik deviance\n{:>8} {:>8} {:>8} {:>8}\n",
        num(m.aic, 1),
        num(m.bic, 1),
        num(m.glmer_log_likelihood, 1),
        num(m.criterion, 1)
    );
    let _ = writeln!(s, "Random effects:\n Groups   Name        Variance Std.Dev.");
    for r in &m.random_effects {
        let _ = writeln!(
            s,
            " {:<8} {:<11} {:>8} {:>8}",
            r.group,
            r.term.as_deref().unwrap_or(""),
            num(r.variance, 4),
            num(r.std_dev, 4)
        );
    }
    let groups: Vec<String> = m.groups.iter().map(|(g, n)| format!("{g}, {n}")).collect();
    let _ = writeln!(s, "Number of obs: {}, groups:  {}\n", m.n_obs, groups.join("; "));
    let width = m.fixed_effects.iter().map(|f| f.term.len()).max().unwrap_or(0).max(11);
    let _ = writeln!(
        s,
        "Fixed effects:\n{:<width$} {:>10} {:>10} {:>8} {:>10} {:>10}",
        "", "Estimate", "Std. Error", "z value", "Pr(>|z|)", "Odds ratio"
    );
    for f in &m.fixed_effects {
        let _ = writeln!(
            s,
            "{:<width$} {:>10} {:>10} {:>8} {:>10} {:>10}",
            f.term,
            num(f.estimate, 5),
            num(f.std_error, 5),
            num(f.z_value, 3),
            pval(f.p_value),
            num(f.odds_ratio, 4)
        );
    }
    if let Some(msg) = dropped_message(&m.dropped_columns) {
        let _ = writeln!(s, "\n{msg}");
    }
    if !m.converged {
        let _ = writeln!(s, "\nWarning: the optimizer did not converge ({})", m.diagnostics.optimizer_status);
    }
    if m.singular {
        let _ = writeln!(s, "\nboundary (singular) fit: a variance component is estimated at zero");
    }
    if m.diagnostics.fitted_probabilities_0_or_1 > 0 {
        let _ = writeln!(
            s,
            "\nWarning: fitted probabilities numerically 0 or 1 occurred ({} observations): a covariate may \
             separate the outcome; its coefficient and SE are unreliable",
            m.diagnostics.fitted_probabilities_0_or_1
        );
    }
    if !m.diagnostics.separated_groups.is_empty() {
        let _ = writeln!(
            s,
            "\nNote: {} groups have all-0 or all-1 responses (separated); their modes rest on the random-effects prior",
            m.diagnostics.separated_groups.len()
        );
    }
    if m.n_dropped > 0 {
        let _ = writeln!(s, "{} rows with missing values dropped", m.n_dropped);
    }
    s
}

/// Conditional modes as CSV: `group,level,term,estimate,cond_sd`, one row per level and term.
pub fn ranef_csv(ranef: &[ConditionalModes]) -> String {
    let mut s = String::from("group,level,term,estimate,cond_sd\n");
    let q =
        |v: &str| if v.contains([',', '"', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() };
    for t in ranef {
        for (j, level) in t.levels.iter().enumerate() {
            for (c, term) in t.terms.iter().enumerate() {
                let _ = writeln!(s, "{},{},{},{},{}", q(&t.group), q(level), q(term), t.modes[j][c], t.cond_sd[j][c]);
            }
        }
    }
    s
}
