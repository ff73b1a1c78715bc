//! End-to-end tests of the psmeval binary: commands run as a user runs them, outputs checked on disk.

use std::path::Path;
use std::process::{Command, Output};

fn psmeval(args: &[&str], threads: Option<usize>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_psmeval"));
    cmd.args(args);
    if let Some(t) = threads {
        cmd.env("RAYON_NUM_THREADS", t.to_string());
    }
    cmd.output().expect("psmeval runs")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "psmeval failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn simulate_is_deterministic_across_thread_counts_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let args = |out: &Path| {
        vec![
            "simulate".to_string(),
            "--preset".into(),
            "small".into(),
            "--schools".into(),
            "300".into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let run = |out: &Path, t| {
        let v = args(out);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        psmeval(&v, Some(t))
    };
    ok(&run(&a, 1));
    ok(&run(&b, 2));
    for f in ["schools.csv", "pupils.csv", "truth.json"] {
        assert_eq!(read(&a.join(f)), read(&b.join(f)), "{f} differs between 1 and 2 threads");
    }
    let truth: serde_json::Value = serde_json::from_slice(&read(&a.join("truth.json"))).unwrap();
    assert_eq!(truth["config"]["schools"], 300);
    assert_eq!(truth["config"]["effect"], 0.1);
    let pq = dir.path().join("pq");
    let out = psmeval(&["simulate", "--schools", "300", "--format", "parquet", "--out", pq.to_str().unwrap()], None);
    ok(&out);
    assert!(pq.join("pupils.parquet").metadata().unwrap().len() > 1000);
}

#[test]
fn simulate_rejects_bad_parameters_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = psmeval(&["simulate", "--schools", "5", "--out", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schools = 5"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
    let out = psmeval(&["simulate", "--bogus"], None);
    assert_eq!(out.status.code(), Some(2), "usage errors exit with 2");
}

#[test]
fn help_lists_commands() {
    let out = psmeval(&["--help"], None);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("simulate"), "{text}");
}
