//! An lme4-like text rendering of a fitted model (`Display` for [`LmmFit`]); nothing is printed here.

use std::fmt;

use crate::fit::LmmFit;

impl fmt::Display for LmmFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Linear mixed model fit by {}", if self.reml { "REML" } else { "maximum likelihood" })?;
        if self.reml {
            writeln!(f, "REML criterion at convergence: {:.1}", self.criterion)?;
        } else {
            writeln!(f, "{:>10} {:>10} {:>10} {:>10}", "AIC", "BIC", "logLik", "deviance")?;
            writeln!(
                f,
                "{:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                self.aic, self.bic, self.log_likelihood, self.criterion
            )?;
        }
        writeln!(f, "\nRandom effects:")?;
        writeln!(f, " {:<12} {:<12} {:>12} {:>10}", "Groups", "Name", "Variance", "Std.Dev.")?;
        for re in &self.random_effects {
            writeln!(
                f,
                " {:<12} {:<12} {:>12.4} {:>10.4}",
                re.group,
                re.term.as_deref().unwrap_or(""),
                re.variance,
                re.std_dev
            )?;
        }
        for c in &self.correlations {
            writeln!(f, " Corr({}: {}, {}) = {:.3}", c.group, c.term1, c.term2, c.correlation)?;
        }
        let groups: Vec<String> = self.groups.iter().map(|(g, n)| format!("{g}, {n}")).collect();
        writeln!(f, "Number of obs: {}, groups:  {}", self.n_obs, groups.join("; "))?;
        writeln!(f, "\nFixed effects:")?;
        writeln!(
            f,
            "{:<20} {:>12} {:>12} {:>10} {:>9} {:>10}",
            "", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"
        )?;
        for fe in &self.fixed_effects {
            writeln!(
                f,
                "{:<20} {:>12.5} {:>12.5} {:>10.3} {:>9.3} {:>10.3e}",
                fe.term, fe.estimate, fe.std_error, fe.df, fe.t_value, fe.p_value
            )?;
        }
        if self.singular {
            writeln!(f, "boundary (singular) fit: see help('isSingular')")?;
        }
        if !self.converged {
            writeln!(f, "warning: the optimizer did not report convergence ({})", self.optimizer.status)?;
        }
        Ok(())
    }
}
