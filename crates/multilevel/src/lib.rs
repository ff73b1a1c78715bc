//! Linear mixed models fitted as lme4's `lmer` fits them (Bates et al. 2015, profiled deviance on θ), with
//! lmerTest's Satterthwaite degrees of freedom for the fixed effects.
//!
//! Entry point: [`fit_lmm`] on a [`psmeval_frame::ModelFrame`] gives an immutable [`LmmFit`]. Terms are
//! reordered by decreasing number of levels as lme4 does; θ holds each term's lower-triangular Λ column by
//! column. A single term (any size: national data with 16,000 schools) is solved with one small block per
//! level; several terms (crossed or nested) share one dense block (up to 6,000 random effects).
//!
//! ```
//! use ndarray::Array2;
//! use psmeval_frame::{ModelFrame, RandomTerm};
//! use psmeval_multilevel::{LmmOptions, fit_lmm};
//!
//! // Four schools, three pupils each: y = 10 + school effect + noise.
//! let y = vec![9.0, 10.5, 11.0, 12.0, 13.5, 12.5, 8.0, 7.5, 9.0, 10.0, 11.5, 10.5];
//! let codes: Vec<u32> = (0..12).map(|i| i / 3).collect();
//! let frame = ModelFrame {
//!     response_name: "y".into(),
//!     y,
//!     x: Array2::ones((12, 1)),
//!     x_names: vec!["(Intercept)".into()],
//!     random: vec![RandomTerm {
//!         group: "school".into(),
//!         levels: vec!["a".into(), "b".into(), "c".into(), "d".into()],
//!         codes,
//!         names: vec!["(Intercept)".into()],
//!         z: Array2::ones((12, 1)),
//!     }],
//!     rows: (0..12).collect(),
//!     n_dropped: 0,
//! };
//! let fit = fit_lmm(&frame, &LmmOptions::default()).unwrap();
//! assert!(fit.converged);
//! assert!(fit.icc.unwrap() > 0.5);
//! println!("{fit}"); // lme4-like summary text
//! ```

mod dense;
pub mod describe;
mod error;
mod fit;
pub mod glmm;
mod optim;
mod pls;
mod satterthwaite;
mod summary;

pub use error::LmmError;
pub use fit::{
    ContrastTest, Correlation, FixedEffect, LikelihoodRatioTest, LmmFit, LmmOptions, RandomEffect, RanefTerm, fit_lmm,
    fit_lmm_weighted, likelihood_ratio_test,
};
pub use optim::OptSummary;
