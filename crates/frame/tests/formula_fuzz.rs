//! Property test of the formula parser: many random token sequences (names, operators, parentheses,
//! numbers, random-effects bars, stray characters and deep nesting) must each parse or give a
//! [`FormulaError`], never panic, overflow the stack or run away; and whatever parses must be a model
//! the design layer can take (a response, a term list within the limits). Deterministic: a fixed seed,
//! so a failure reproduces; `FORMULA_FUZZ_CASES` raises the count for longer runs.

use psmeval_frame::{MAX_TERMS, parse_formula};

/// SplitMix64: a tiny deterministic generator (no dependency needed for a bounded fuzz run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "y",
    "x",
    "z",
    "g",
    "school_id",
    "year",
    "factor(",
    "cbind(",
    "log(",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    ":",
    "|",
    "||",
    "~",
    "0",
    "1",
    "2",
    ",",
    " ",
    "  ",
    "é",
    "\u{0}",
    "\"",
    "'",
    "`",
    "^",
    ".",
    "%in%",
    "1e5",
    "-1",
];

fn random_formula(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.below(4) != 0 {
        s.push_str(["y ~ ", "cbind(y, z) ~ ", "y~", "~ "][rng.below(4)]);
    }
    let len = 1 + rng.below(40);
    for _ in 0..len {
        s.push_str(PIECES[rng.below(PIECES.len())]);
    }
    if rng.below(20) == 0 {
        let depth = rng.below(300);
        s = format!("y ~ {}{s}{}", "(".repeat(depth), ")".repeat(depth));
    }
    s
}

#[test]
fn the_parser_never_panics_and_what_parses_is_well_formed() {
    let cases: usize = std::env::var("FORMULA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let mut rng = Rng(20_261_202);
    let (mut parsed, mut refused) = (0usize, 0usize);
    for _ in 0..cases {
        let text = random_formula(&mut rng);
        match parse_formula(&text) {
            Ok(f) => {
                parsed += 1;
                assert!(f.fixed.terms.len() <= MAX_TERMS, "{text}");
                assert!(!f.response.label().is_empty(), "{text}");
                for t in &f.fixed.terms {
                    assert!(!t.vars.is_empty(), "an empty term from {text:?}");
                }
                for r in &f.random {
                    assert!(!r.group.is_empty(), "a random term without a group from {text:?}");
                }
                // Printing and re-reading the columns must not panic either.
                let _ = f.columns();
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(parsed > 0 && refused > 0, "the generator reaches both outcomes ({parsed} parsed, {refused} refused)");
}
