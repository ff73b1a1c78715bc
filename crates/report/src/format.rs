//! Number formats of reports: fixed decimals with a true minus sign, p values, counts with thousands
//! separators, and full-precision numbers for CSV tables.

/// Formats a number with `digits` decimals, `–` for a missing value, and a true minus sign.
pub fn num(x: f64, digits: usize) -> String {
    if x.is_finite() { format!("{x:.digits$}").replace('-', "−") } else { "–".into() }
}

/// Formats degrees of freedom: one decimal up to 100, a whole number (with thousands separators) above,
/// where the decimal says nothing; `–` when missing.
pub fn df(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x > 100.0 {
        count(x.round() as usize)
    } else {
        num(x, 1)
    }
}

/// Formats an optional number.
pub fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".into(), |v| num(v, digits))
}

/// Formats a p value as reports do: `<0.001` below 0.001, else three decimals.
pub fn pval(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Formats an integer count with thousands separators.
pub fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Full precision (shortest round-trip form), scientific notation for very small or large magnitudes; `NA`
/// for a missing value. For CSV tables.
pub fn full(x: f64) -> String {
    if !x.is_finite() {
        "NA".into()
    } else if x != 0.0 && !(1e-4..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// [`full`] of an optional number.
pub fn full_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "NA".into(), full)
}

/// One CSV line, quoting cells that hold a comma, a quote or a newline.
pub fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| if c.contains([',', '"', '\n']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() })
        .collect();
    quoted.join(",") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(pval(0.0004), "<0.001");
        assert_eq!(pval(0.04567), "0.046");
        assert_eq!(count(6_000_712), "6,000,712");
        assert_eq!(count(999), "999");
        assert_eq!(num(f64::NAN, 2), "–");
        assert_eq!(opt(Some(1.0), 1), "1.0");
        assert_eq!(df(48.64), "48.6");
        assert_eq!(df(100.0), "100.0");
        assert_eq!(df(220_014.6), "220,015");
        assert_eq!(df(f64::INFINITY), "–");
    }
}
