//! R's binomial links (`family.c`): `linkfun`, `linkinv` and `mu.eta` with R's clamps, for logit and probit.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// `-qnorm(.Machine$double.eps)` as R computes it: the probit link clamps `eta` to ±this.
const PROBIT_THRESH: f64 = 8.125890664701906;
/// `logit_linkinv`'s cut-offs (R's `family.c`).
const LOGIT_THRESH: f64 = 30.0;

/// Link function of the binomial GLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// `binomial(link = "logit")`, MatchIt's default.
    Logit,
    /// `binomial(link = "probit")`.
    Probit,
}

impl std::fmt::Display for Link {
    /// R's name of the link: `logit` or `probit`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Logit => "logit",
            Link::Probit => "probit",
        })
    }
}

impl Link {
    /// R's `linkfun`: `log(mu/(1 − mu))` or `qnorm(mu)`.
    pub fn linkfun(self, mu: f64) -> f64 {
        match self {
            Link::Logit => (mu / (1.0 - mu)).ln(),
            Link::Probit => standard_normal().inverse_cdf(mu),
        }
    }

    /// R's `linkinv`, with R's clamps.
    pub fn linkinv(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                let t = if eta < -LOGIT_THRESH {
                    f64::EPSILON
                } else if eta > LOGIT_THRESH {
                    1.0 / f64::EPSILON
                } else {
                    eta.exp()
                };
                t / (1.0 + t)
            }
            Link::Probit => standard_normal().cdf(eta.clamp(-PROBIT_THRESH, PROBIT_THRESH)),
        }
    }

    /// R's `mu.eta` (derivative of `linkinv`), with R's floor at `DBL_EPSILON`.
    pub fn mu_eta(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                if !(-LOGIT_THRESH..=LOGIT_THRESH).contains(&eta) {
                    f64::EPSILON
                } else {
                    let opexp = 1.0 + eta.exp();
                    eta.exp() / (opexp * opexp)
                }
            }
            Link::Probit => dnorm(eta).max(f64::EPSILON),
        }
    }
}

pub(super) fn standard_normal() -> Normal {
    Normal::standard()
}

fn dnorm(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * (-0.5 * x * x).exp()
}
