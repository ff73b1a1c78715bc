//! End-to-end tests of `psmeval power`: a whole run, the same run in shards merged by `--collect` (byte for
//! byte the same outputs, whatever the thread count), bad input, the Slurm batch scripts, and — when a Slurm
//! cluster is up (`PSMEVAL_SLURM_TEST=1`, set by `scripts/test` after `scripts/slurm-local start`) — a real
//! job array whose merged results equal the local run's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{ok, psmeval, read};

fn fails(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "expected an input error (exit 2): {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    err
}

/// A small design: 120 schools, 8 lead schools matched 1:3, KS2 maths, CR2 by school.
fn study(dir: &Path) -> PathBuf {
    let path = dir.join("power-study.toml");
    std::fs::write(
        &path,
        r#"title = "Small power study"
[data]
schools = "not-read.csv"
pupils = "not-read.csv"
[matching]
formula = "lead ~ pct_fsm + prior_attainment + urban"
ratio = 3
[years]
first = 2013
last = 2017
programme_start = 2015
[model]
covariates = ["fsm", "prior"]
[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = { key_stage = 2 }
standardize_within_year = true
[simulation]
from = "defaults"
schools = 120
leads = 8
cohort_size = 15
"#,
    )
    .unwrap();
    path
}

const FILES: [&str; 5] = ["results.json", "power.csv", "report.md", "report.html", "figures/power-ks2-maths.svg"];

fn run_args<'a>(study: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["power", study, "--replicates", "5", "--effects", "0,0.6", "--seed", "11", "--out", out, "--quiet"]
}

#[test]
fn shards_merge_to_the_same_bytes_as_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path());
    let s = study.to_str().unwrap();
    let whole = dir.path().join("whole");
    ok(&psmeval(&run_args(s, whole.to_str().unwrap()), Some(2)));
    let shards = dir.path().join("run/shards");
    for i in 0..3 {
        let shard = format!("{i}/3");
        let mut args = run_args(s, shards.to_str().unwrap());
        args.extend(["--shard", &shard]);
        ok(&psmeval(&args, Some(1)));
    }
    assert!(shards.join("shard-0002-of-0003.json").exists());
    ok(&psmeval(&["power", "--collect", shards.to_str().unwrap(), "--quiet"], None));
    for f in FILES {
        assert_eq!(read(&whole.join(f)), read(&dir.path().join("run").join(f)), "{f} differs");
    }
    let res: serde_json::Value = serde_json::from_slice(&read(&whole.join("results.json"))).unwrap();
    assert_eq!(res["replicates"], 5);
    let points = &res["analyses"][0]["effects"];
    assert_eq!(points[0]["effect"], 0.0);
    assert_eq!(points[0]["mean_truth"], 0.0);
    let (p0, p1) = (points[0]["power"].as_f64().unwrap(), points[1]["power"].as_f64().unwrap());
    assert!(p1 > p0, "power at 0.6 ({p1}) must exceed power at 0 ({p0})");
    for key in ["coverage", "bias", "empirical_se", "mean_se"] {
        assert!(points[1][key].is_number(), "{key} missing");
    }
    let report = String::from_utf8(read(&whole.join("report.md"))).unwrap();
    assert!(report.contains("Minimum detectable effect") && report.contains("CR2"));

    // A missing shard, a shard of another seed: errors naming the shard, nothing written.
    let out = dir.path().join("merged");
    std::fs::remove_file(shards.join("shard-0001-of-0003.json")).unwrap();
    fails(&psmeval(&["power", "--collect", shards.to_str().unwrap(), "--out", out.to_str().unwrap()], None), "missing");
    let mut args = run_args(s, shards.to_str().unwrap());
    args[7] = "12";
    args.extend(["--shard", "1/3"]);
    ok(&psmeval(&args, None));
    fails(&psmeval(&["power", "--collect", shards.to_str().unwrap(), "--out", out.to_str().unwrap()], None), "seed 12");
    std::fs::write(shards.join("shard-0009-of-0009.json"), "{not json").unwrap();
    fails(
        &psmeval(&["power", "--collect", shards.to_str().unwrap(), "--out", out.to_str().unwrap()], None),
        "shard-0009",
    );
    assert!(!out.exists(), "nothing merged");
}

#[test]
fn bad_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path());
    let s = study.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    fails(&psmeval(&["power", s, "--replicates", "0", "--out", o], None), "replicates");
    assert_eq!(psmeval(&["power", s, "--effects", "0,big", "--out", o], None).status.code(), Some(2));
    fails(&psmeval(&["power", s, "--shard", "3/3", "--out", o], None), "below the number of shards");
    fails(&psmeval(&["power", s, "--effects", "0,9", "--out", o], None), "effects");
    let text = std::fs::read_to_string(&study).unwrap().replace("leads = 8", "leads = 100");
    std::fs::write(&study, text).unwrap();
    fails(&psmeval(&["power", s, "--out", o], None), "simulation.leads");
    let text = std::fs::read_to_string(&study).unwrap().replace("leads = 100", "leads = 8\nschool = 3");
    std::fs::write(&study, text).unwrap();
    fails(&psmeval(&["power", s, "--out", o], None), "school");
    assert!(!out.exists(), "nothing written");
}

/// Without `from = "defaults"` the design comes from the study's own tables: their schools, lead schools and
/// cohort size, and the SDs of the study's impact model fitted to them (calibrated); missing tables are an
/// error that names the file and the way out.
#[test]
fn the_design_comes_from_the_study_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    ok(&psmeval(
        &["simulate", "--schools", "150", "--leads", "8", "--school-sd", "0.5", "--seed", "3", "--out", d],
        None,
    ));
    let text = std::fs::read_to_string(study(dir.path())).unwrap();
    let text = text.split("[simulation]").next().unwrap().to_string();
    let text = text
        .replacen("not-read.csv", "data/schools.csv", 1)
        .replacen("not-read.csv", "data/pupils.csv", 1)
        .replace("ratio = 3", "ratio = 2");
    let study_path = dir.path().join("from-data.toml");
    std::fs::write(&study_path, &text).unwrap();
    let out = dir.path().join("out");
    let args = ["power", study_path.to_str().unwrap(), "--replicates", "2", "--effects", "0", "--out"];
    let mut run = args.to_vec();
    run.extend([out.to_str().unwrap(), "--quiet"]);
    ok(&psmeval(&run, None));
    let res: serde_json::Value = serde_json::from_slice(&read(&out.join("results.json"))).unwrap();
    let design = &res["settings"]["design"];
    assert_eq!(design["basis"]["from"], "data");
    assert_eq!((design["schools"].as_u64(), design["leads"].as_u64()), (Some(150), Some(8)));
    assert_eq!(design["basis"]["sources"]["school_sd"], "data");
    let school_sd = design["school_sd"].as_f64().unwrap();
    assert!((0.38..0.7).contains(&school_sd), "school SD {school_sd} from data simulated with 0.5");
    let cohort = design["cohort_size"].as_f64().unwrap();
    assert!((30.0..42.0).contains(&cohort), "cohort size {cohort} from data simulated with 35.7");
    let fit = &design["basis"]["data_fit"];
    let (pilot, fitted) = (fit["pilot"]["school"].as_f64().unwrap(), fit["fitted"]["school"].as_f64().unwrap());
    assert!((pilot / fitted - 1.0).abs() < 0.05, "the calibrated pilot ({pilot}) reproduces the data ({fitted})");
    let report = String::from_utf8(read(&out.join("report.md"))).unwrap();
    assert!(report.contains("estimated from the study's own data"), "{report}");

    std::fs::remove_file(data.join("pupils.csv")).unwrap();
    let missing = dir.path().join("missing");
    let mut run = args.to_vec();
    run.push(missing.to_str().unwrap());
    let err = fails(&psmeval(&run, None), "pupils.csv: no such file");
    assert!(err.contains("from = \"defaults\""), "{err}");
    assert!(!missing.exists(), "nothing written");
}

#[test]
fn slurm_scripts_and_a_missing_sbatch() {
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path());
    let s = study.to_str().unwrap();
    let o = dir.path().join("slurm-run");
    let mut args = run_args(s, o.to_str().unwrap());
    args.extend(["--slurm", "--array", "3", "--partition", "short", "--time", "00:30:00", "--dry-run"]);
    let out = psmeval(&args, None);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "#SBATCH --array=0-2",
        "#SBATCH --partition=short",
        "#SBATCH --time=00:30:00",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "--effects=0,0.6",
        "power --collect",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    assert!(!o.exists(), "a dry run writes nothing");
    args.pop();
    let out = Command::new(env!("CARGO_BIN_EXE_psmeval")).args(&args).env("PATH", "").output().unwrap();
    fails(&out, "sbatch not found");
}

/// A real job array on the local one-node cluster (`scripts/slurm-local`), when the test script started it.
#[test]
fn slurm_job_array_gives_the_local_results() {
    if std::env::var("PSMEVAL_SLURM_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: no Slurm cluster (scripts/test starts one and sets PSMEVAL_SLURM_TEST=1)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path());
    let s = study.to_str().unwrap();
    let local = dir.path().join("local");
    ok(&psmeval(&run_args(s, local.to_str().unwrap()), None));
    let cluster = dir.path().join("cluster");
    let mut args = run_args(s, cluster.to_str().unwrap());
    args.extend(["--slurm", "--array", "2", "--wait"]);
    let out = psmeval(&args, None);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("submitted job array"));
    assert!(cluster.join("shards/shard-0001-of-0002.json").exists());
    for f in FILES {
        assert_eq!(read(&local.join(f)), read(&cluster.join(f)), "{f} differs between the local run and Slurm");
    }
}
