//! Property test of the study-file parser and checks: random mutations of the example study (bytes
//! deleted, lines repeated or dropped, numbers replaced by extremes, values by other types, formulas by
//! deep nesting) must each be refused with a message or planned, never panic; a planned study must also
//! survive the data check against a small simulated population. Deterministic (fixed seed);
//! `STUDY_FUZZ_CASES` raises the count.

use psmeval_evaluation::{Plan, Study, population_tables};
use psmeval_synth::{SimConfig, simulate};

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

const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "2013",
    "99999",
    "0.5",
];

fn mutate(base: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(lines.len());
        match rng.below(6) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                // A value replaced by an extreme or by another type.
                if let Some((k, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{k} = {}", EXTREMES[rng.below(EXTREMES.len())]);
                }
            }
            3 => {
                let l = &lines[i];
                if !l.is_empty() {
                    let cut = rng.below(l.len());
                    let cut = (0..=cut).rev().find(|&c| l.is_char_boundary(c)).unwrap_or(0);
                    lines[i] = l[..cut].to_string();
                }
            }
            4 => {
                if let Some((k, _)) = lines[i].split_once(" = \"") {
                    let depth = rng.below(3000);
                    lines[i] = format!("{k} = \"lead ~ {}pct_fsm{}\"", "(".repeat(depth), ")".repeat(depth));
                }
            }
            _ => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_study_files_are_refused_or_planned_never_a_panic() {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/example-study.toml")).unwrap();
    let pop = simulate(&SimConfig { schools: 200, leads: 10, ..SimConfig::small() }).unwrap();
    let (schools, pupils) = population_tables(&pop).unwrap();
    let cases: usize = std::env::var("STUDY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    let mut rng = Rng(7);
    let (mut planned, mut refused) = (0usize, 0usize);
    for _ in 0..cases {
        let text = mutate(&base, &mut rng);
        let plan = Study::from_toml(&text).and_then(Plan::new);
        match plan {
            Ok(plan) => {
                planned += 1;
                if let Err(e) = plan.check_data(&schools, &pupils) {
                    assert!(!e.to_string().is_empty());
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().trim().is_empty(), "an empty message for:\n{text}");
            }
        }
    }
    assert!(planned > 0 && refused > 0, "{planned} planned, {refused} refused");
}
