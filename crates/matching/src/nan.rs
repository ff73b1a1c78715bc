//! Serde helper for results files: `serde_json` writes a non-finite `f64` (a `NaN` where MatchIt reports
//! `NA`) as `null`; [`f64_or_nan`] reads `null` back as `NaN`, so results round-trip.

use serde::{Deserialize, Deserializer};

/// Deserializes a number, or `null` as `NaN`.
pub(crate) fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
}
