//! Mixed models for pupils in schools, fitted as lme4 fits them: linear ones as `lmer` (Bates et al. 2015,
//! profiled criterion on θ) with lmerTest's Satterthwaite degrees of freedom, and logistic ones as `glmer`
//! (Laplace or adaptive Gauss–Hermite quadrature).
//!
//! Entry points: [`fit_lmm`] and [`fit_glmm`] on a [`psmeval_frame::ModelFrame`] give an immutable
//! [`LmmFit`] or [`GlmmFit`]. Both implement [`MixedModel`], one contract for estimates (β, `vcov`, the
//! fixed-effects table), variance components, conditional modes, information criteria, the optimizer's
//! record and contrasts, all in one result vocabulary ([`FixedEffect`], [`VarianceComponent`],
//! [`Correlation`], [`ConditionalModes`], [`ContrastTest`], [`OptSummary`]); errors are one
//! [`MixedModelError`]. Nothing here prints: rendering belongs to the report.
//!
//! Terms are reordered by decreasing number of levels as lme4 does; θ holds each term's lower-triangular Λ
//! column by column. A single linear term (any size: national data with 16,000 schools) is solved with one
//! small block per level; several terms (crossed or nested, such as `(1 | school) + (1 | school:year)`)
//! share one dense block when they have at most 120 random effects in all and are otherwise factored by a
//! sparse Cholesky with a fill-reducing ordering (no fill at all for nested terms, so the cost grows linearly
//! with the number of cohorts). Logistic models take the same nested and crossed structures (Laplace), through
//! the same sparse factorization of the weighted system.
//!
//! Design-based inference for the fixed effects of a linear fit: [`Cr2`] (clubSandwich's CR2 variance, HTZ
//! Wald tests and the wild cluster bootstrap-t) and [`Randomization`] (the treatment re-assigned among units,
//! the GLS estimate recomputed without refitting, p values and test-inversion intervals).
//!
//! ```
//! use ndarray::Array2;
//! use psmeval_frame::{ModelFrame, RandomTerm};
//! use psmeval_multilevel::{Family, LmmOptions, MixedModel, fit_lmm};
//!
//! // Four schools, three pupils each; the second column marks a programme pupil.
//! let y = vec![9.0, 10.5, 11.0, 12.0, 13.5, 12.5, 8.0, 7.5, 9.0, 10.0, 11.5, 10.5];
//! let treated = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
//! let codes: Vec<u32> = (0..12).map(|i| i / 3).collect();
//! let frame = ModelFrame {
//!     response_name: "y".into(),
//!     y,
//!     x: Array2::from_shape_fn((12, 2), |(i, j)| if j == 0 { 1.0 } else { treated[i] }),
//!     x_names: vec!["(Intercept)".into(), "treated".into()],
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
//!
//! // One code path for linear and logistic fits.
//! fn programme_effect(model: &dyn MixedModel) -> (f64, f64) {
//!     let test = model.contrast(&[0.0, 1.0]).unwrap();
//!     (test.estimate, test.p_value)
//! }
//! assert_eq!(fit.family(), Family::Gaussian);
//! assert!(fit.converged());
//! let (effect, p) = programme_effect(&fit);
//! assert_eq!(effect, fit.fixed_effects()[1].estimate);
//! assert!(fit.contrast(&[0.0, 1.0]).unwrap().df.is_some()); // Satterthwaite df for an LMM
//! assert!((0.0..=1.0).contains(&p));
//! assert!(fit.icc().unwrap() > 0.5);
//! ```

#![deny(missing_docs)]

mod dense;
mod error;
mod fit;
pub mod glmm;
mod model;
mod nested;
mod optim;
mod pls;
pub mod randomization;
mod result;
pub mod robust;
mod satterthwaite;
mod sparse;
mod tail;
mod validate;

pub use error::MixedModelError;
pub use fit::{LmmFit, LmmOptions, fit_lmm, likelihood_ratio_test};
pub use glmm::{GlmmDiagnostics, GlmmFit, GlmmOptions, Link, fit_glmm};
pub use model::{Family, MixedModel, wald_chi_square};
pub use optim::{OptMethod, OptParameters, OptRun, OptSummary};
pub use randomization::{Permutation, Randomization, RandomizationDesign, RandomizationTest, Statistic};
pub use result::{
    ConditionalModes, ContrastTest, Correlation, DfMethod, FixedEffect, LikelihoodRatioTest, VarianceComponent,
};
pub use robust::{BootstrapWeights, Cr2, WaldTest, WildBootstrap};
