//! Golden test of the evaluation report: a committed `results.json` (an `Evaluation` written by `psmeval
//! evaluate` on a small simulated study, see `golden/README.md`) renders to the committed `report.md` and CSV
//! tables byte for byte. A change to the report's text shows here as a diff to review; regenerate the files
//! with `PSMEVAL_BLESS=1 cargo test -p psmeval-report --test golden` only when the change is intended.

use std::path::Path;

use psmeval_evaluation::Evaluation;
use psmeval_report::render_evaluation;

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

#[test]
fn committed_results_render_to_the_committed_report() {
    let json = std::fs::read_to_string(golden("results.json")).unwrap();
    let ev: Evaluation = serde_json::from_str(&json).unwrap();
    // The evaluation survives a JSON round trip unchanged (compared as JSON: NaN ≠ NaN).
    let text = serde_json::to_string_pretty(&ev).unwrap();
    let again: Evaluation = serde_json::from_str(&text).unwrap();
    assert!(serde_json::to_string_pretty(&again).unwrap() == text, "the JSON round trip changed the evaluation");
    assert!(text.trim_end() == json.trim_end(), "results.json is not what psmeval writes for this evaluation");
    let files = render_evaluation(&ev).unwrap();
    let bless = std::env::var_os("PSMEVAL_BLESS").is_some();
    for name in [
        "report.md",
        "tables/balance.csv",
        "tables/coefficients.csv",
        "tables/effects.csv",
        "tables/missing.csv",
        "tables/gap_closing.csv",
    ] {
        let got = files.iter().find(|f| f.path == name).unwrap_or_else(|| panic!("{name} not rendered"));
        let path = golden(name.rsplit('/').next().unwrap());
        if bless {
            std::fs::write(&path, &got.bytes).unwrap();
        }
        let want = std::fs::read(&path).unwrap();
        assert!(
            got.bytes == want,
            "{name} differs from {}:\n{}",
            path.display(),
            first_difference(&String::from_utf8_lossy(&got.bytes), &String::from_utf8_lossy(&want))
        );
    }
    // Every figure the report links is rendered, as SVG and PNG.
    let md = String::from_utf8(files.iter().find(|f| f.path == "report.md").unwrap().bytes.clone()).unwrap();
    for stem in md.split("](figures/").skip(1).map(|s| s.split(".png)").next().unwrap()) {
        for ext in ["svg", "png"] {
            let path = format!("figures/{stem}.{ext}");
            assert!(files.iter().any(|f| f.path == path && f.bytes.len() > 1000), "{path} missing");
        }
    }
    let html = String::from_utf8(files.iter().find(|f| f.path == "report.html").unwrap().bytes.clone()).unwrap();
    assert!(html.contains("<svg") && html.contains("<table>"));
}

fn first_difference(got: &str, want: &str) -> String {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            return format!("line {}:\n  got:  {g}\n  want: {w}", i + 1);
        }
    }
    format!("lengths differ: {} vs {} lines", got.lines().count(), want.lines().count())
}

#[test]
fn differential_missing_data_is_shown_and_named() {
    // The golden evaluation with a quarter of the treatment schools' 2015/16 KS2 maths pupils unanalysed:
    // the missing-data table shows 75.0% against the contrast schools' share, and the report names the year.
    let json = std::fs::read_to_string(golden("results.json")).unwrap();
    let mut ev: Evaluation = serde_json::from_str(&json).unwrap();
    let o = ev.outcomes.iter_mut().find(|o| o.name == "KS2 maths" && o.subgroup.is_none()).unwrap();
    let c = o.counts.by_year.iter_mut().find(|c| c.year == 2016 && c.treated).unwrap();
    c.with_outcome = c.pupils - c.pupils / 4;
    c.analysed = c.with_outcome;
    let expected = format!("{:.1}%", 100.0 * c.analysed as f64 / c.pupils as f64);
    let files = render_evaluation(&ev).unwrap();
    let md = String::from_utf8(files.iter().find(|f| f.path == "report.md").unwrap().bytes.clone()).unwrap();
    let row = md.lines().find(|l| l.starts_with("| KS2 maths | 2015/16 |")).expect("a missing-data row for 2015/16");
    assert!(row.contains(&expected), "{row}");
    assert!(md.contains("differ by more than 5 percentage points") && md.contains("KS2 maths in 2015/16"), "{md}");
    let csv = String::from_utf8(files.iter().find(|f| f.path == "tables/missing.csv").unwrap().bytes.clone()).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("KS2 maths,all pupils,2016,treatment,")), "{csv}");
}

#[test]
fn randomization_inference_is_named_with_its_scheme() {
    // The golden evaluation relabelled as if analysed with randomization inference: the report says how
    // the treatment was re-assigned, how often, and that the SEs shown are CR2's.
    let json = std::fs::read_to_string(golden("results.json")).unwrap();
    let mut ev: Evaluation = serde_json::from_str(&json).unwrap();
    ev.study.inference.method = psmeval_evaluation::study::InferenceMethod::Permutation;
    ev.study.inference.permutations = 1999;
    for o in &mut ev.outcomes {
        if let Some(i) = o.inference.as_mut().filter(|i| i.method == "CR2") {
            i.method = "permutation".into();
            o.effects.iter_mut().for_each(|e| e.inference = "permutation".into());
        }
    }
    let files = render_evaluation(&ev).unwrap();
    let md = String::from_utf8(files.iter().find(|f| f.path == "report.md").unwrap().bytes.clone()).unwrap();
    assert!(md.contains("re-assigned 1,999 times among the schools of each matched set"), "{md}");
    assert!(md.contains("and the effect re-estimated each time"), "{md}");
    assert!(md.contains("The standard errors and df shown, and the event study's intervals, are CR2's"), "{md}");
    assert!(md.contains("from randomization inference, the treatment re-assigned among schools"), "{md}");
    // The event study keeps CR2 t intervals, and its caption says so.
    let event = md.lines().find(|l| l.starts_with("*Event study of KS2 maths")).unwrap();
    assert!(event.contains("cluster-robust (CR2") && !event.contains("randomization"), "{event}");
    ev.study.inference.permute = psmeval_evaluation::study::PermuteAmong::All;
    let files = render_evaluation(&ev).unwrap();
    let md = String::from_utf8(files.iter().find(|f| f.path == "report.md").unwrap().bytes.clone()).unwrap();
    assert!(md.contains("re-assigned 1,999 times among all matched schools"), "{md}");
    assert!(!md.contains("psmeval's default for a design matched with replacement"), "{md}");
    // Chosen by psmeval for a design matched with replacement: the report says so, and why.
    ev.study.inference.replacement_default = true;
    let files = render_evaluation(&ev).unwrap();
    let md = String::from_utf8(files.iter().find(|f| f.path == "report.md").unwrap().bytes.clone()).unwrap();
    assert!(md.contains("psmeval's default for a design matched with replacement (the study names no method)"), "{md}");
    ev.study.inference.statistic = psmeval_multilevel::Statistic::Studentized;
    let files = render_evaluation(&ev).unwrap();
    let md = String::from_utf8(files.iter().find(|f| f.path == "report.md").unwrap().bytes.clone()).unwrap();
    assert!(md.contains("and the effect's t statistic (the estimate over its cluster-robust standard error"), "{md}");
}
