//! psmeval's reports: renders an evaluation ([`psmeval_evaluation::Evaluation`]), a matching run and a
//! mixed-model fit as Markdown, self-contained HTML, CSV tables, text summaries and figures (SVG and PNG),
//! returned as text or bytes. The crate computes nothing and writes no file: whatever it shows is in the
//! value it is given, so a report can be rebuilt from `results.json` alone.
//!
//! ```
//! use psmeval_report::document::Document;
//! use psmeval_report::format::{num, pval};
//!
//! let mut d = Document { title: "Balance".into(), ..Default::default() };
//! d.table(&["term", "smd", "p"], vec![vec!["pct_fsm".into(), num(-0.1234, 3), pval(0.0004)]]);
//! assert!(d.markdown().contains("| pct_fsm | −0.123 | <0.001 |"));
//! assert!(d.html().contains("<td class=\"num\">−0.123</td>"));
//! ```

#![deny(missing_docs)]

pub mod document;
mod evaluation;
mod families;
pub mod format;
mod gaps;
pub mod lmm;
pub mod matching;
pub mod plot;
mod power;
mod value_added;

pub use evaluation::{evaluation_document, render_evaluation};
pub use families::render_families;
pub use gaps::render_gaps;
pub use power::render_power;
pub use value_added::render_value_added;

/// One output file: its path relative to the output folder and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Relative path, `/`-separated (e.g. `figures/love.svg`).
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

impl Artifact {
    /// A text file.
    pub fn text(path: impl Into<String>, text: String) -> Artifact {
        Artifact { path: path.into(), bytes: text.into_bytes() }
    }
}

/// A report that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}
