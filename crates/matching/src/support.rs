//! Common-support discarding, as MatchIt's `discard` argument.
//!
//! MatchIt (`R/discard.R`) compares each unit's distance with the range of the other group's distances,
//! over all units: `"treated"` drops treated units below the controls' minimum or above their maximum,
//! `"control"` drops controls outside the treated range, and `"both"` drops every unit outside the
//! intersection of the two ranges. Bounds are inclusive (a unit exactly at the other group's extreme is kept).

use serde::Serialize;
use thiserror::Error;

/// Which units to discard for lack of common support.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub enum Discard {
    /// Keep every unit (the default).
    #[default]
    None,
    /// Discard treated units outside the range of the controls' distances.
    Treated,
    /// Discard controls outside the range of the treated units' distances.
    Control,
    /// Discard units of both groups outside the intersection of the two ranges.
    Both,
    /// A caller-supplied mask (`true` = discard), one entry per unit, as MatchIt's logical `discard`.
    Mask(Vec<bool>),
}

/// Errors of [`discard`].
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SupportError {
    /// The mask's length differs from the number of units.
    #[error("discard mask has {len} entries for {n} units")]
    MaskLength {
        /// Mask length.
        len: usize,
        /// Number of units.
        n: usize,
    },
    /// The distance and treatment vectors differ in length.
    #[error("distance has {distance} entries but treat has {treat}")]
    Length {
        /// Length of the distance.
        distance: usize,
        /// Length of the treatment.
        treat: usize,
    },
    /// One group is empty, so its range is undefined.
    #[error("no {group} units: common support is undefined")]
    EmptyGroup {
        /// "treated" or "control".
        group: &'static str,
    },
}

/// The discarded units (`true` = discarded) under `rule`.
pub fn discard(distance: &[f64], treat: &[bool], rule: &Discard) -> Result<Vec<bool>, SupportError> {
    let n = treat.len();
    if distance.len() != n {
        return Err(SupportError::Length { distance: distance.len(), treat: n });
    }
    let range = |group: bool| {
        distance
            .iter()
            .zip(treat)
            .filter(|(_, t)| **t == group)
            .fold(None, |acc: Option<(f64, f64)>, (&d, _)| match acc {
                None => Some((d, d)),
                Some((lo, hi)) => Some((lo.min(d), hi.max(d))),
            })
            .ok_or(SupportError::EmptyGroup { group: if group { "treated" } else { "control" } })
    };
    Ok(match rule {
        Discard::None => vec![false; n],
        Discard::Mask(mask) => {
            if mask.len() != n {
                return Err(SupportError::MaskLength { len: mask.len(), n });
            }
            mask.clone()
        }
        Discard::Treated => {
            let (lo, hi) = range(false)?;
            distance.iter().zip(treat).map(|(&d, &t)| t && (d < lo || d > hi)).collect()
        }
        Discard::Control => {
            let (lo, hi) = range(true)?;
            distance.iter().zip(treat).map(|(&d, &t)| !t && (d < lo || d > hi)).collect()
        }
        Discard::Both => {
            let (lo0, hi0) = range(false)?;
            let (lo1, hi1) = range(true)?;
            let (lo, hi) = (lo0.max(lo1), hi0.min(hi1));
            distance.iter().map(|&d| d < lo || d > hi).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive() {
        let d = [0.1, 0.5, 0.9, 0.2, 0.5, 0.95];
        let t = [false, false, false, true, true, true];
        assert_eq!(discard(&d, &t, &Discard::Treated).unwrap(), [false, false, false, false, false, true]);
        assert_eq!(discard(&d, &t, &Discard::Control).unwrap(), [true, false, false, false, false, false]);
        assert_eq!(discard(&d, &t, &Discard::Both).unwrap(), [true, false, false, false, false, true]);
        assert!(discard(&d, &t, &Discard::None).unwrap().iter().all(|x| !x));
        assert_eq!(discard(&d, &t, &Discard::Mask(vec![true])), Err(SupportError::MaskLength { len: 1, n: 6 }));
    }
}
