//! JSON and non-finite numbers: serde_json writes NaN and ±∞ as `null`; these helpers read `null` back as NaN
//! so that every result struct round-trips through `results.json`.

use serde::{Deserialize, Deserializer};

/// Reads a number, or `null` as NaN.
pub(crate) fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
