//! End-to-end tests of the psmeval binary: commands run as a user runs them, outputs checked on disk.

use std::path::Path;
use std::process::Command;

mod common;
use common::{ok, psmeval, read};
use sha2::{Digest, Sha256};

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
    for command in ["simulate", "match", "lmm", "evaluate", "report"] {
        assert!(text.contains(command), "{command} missing from: {text}");
    }
}

/// A study of a simulated population: `leads` lead schools among `schools`, 1:5 matching, KS2 maths
/// (standardized within year) and the expected standard, FSM pupils as a subgroup.
fn study(dir: &Path, schools: usize, leads: usize, effect: f64) -> std::path::PathBuf {
    let data = dir.join("data");
    let out = psmeval(
        &[
            "simulate",
            "--schools",
            &schools.to_string(),
            "--leads",
            &leads.to_string(),
            "--effect",
            &effect.to_string(),
            "--out",
            data.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    let text = r#"
title = "Test study"
[data]
schools = "data/schools.csv"
pupils = "data/pupils.csv"
school_id = "school_id"
treatment = "lead"
year = "year"
[matching]
formula = "lead ~ pct_fsm + pct_eal + idaci + prior_attainment + urban"
ratio = 5
[years]
first = 2013
last = 2017
programme_start = 2015
[model]
covariates = ["female", "fsm", "eal", "sen", "prior"]
[[outcomes]]
name = "KS2 maths"
column = "maths"
filter = { key_stage = 2 }
standardize_within_year = true
[[outcomes]]
name = "KS2 expected"
column = "expected"
filter = { key_stage = 2 }
family = "binomial"
[[subgroups]]
name = "FSM pupils"
filter = { fsm = 1 }
"#;
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn pooled(results: &serde_json::Value, outcome: &str) -> serde_json::Value {
    let o = results["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == outcome && o["subgroup"].is_null())
        .unwrap_or_else(|| panic!("no outcome {outcome}"));
    o["effects"].as_array().unwrap().iter().find(|e| e["year"] == "pooled").expect("pooled effect").clone()
}

#[test]
fn evaluate_writes_a_complete_deterministic_report_that_finds_the_effect() {
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path(), 400, 20, 0.5);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&psmeval(&["evaluate", study.to_str().unwrap(), "--out", a.to_str().unwrap(), "--quiet"], Some(1)));
    ok(&psmeval(&["evaluate", study.to_str().unwrap(), "--out", b.to_str().unwrap(), "--quiet"], Some(2)));
    assert_eq!(read(&a.join("results.json")), read(&b.join("results.json")), "results.json depends on threads");
    // The same study run from its own directory by a relative path gives the same bytes.
    let c = dir.path().join("c");
    let out = Command::new(env!("CARGO_BIN_EXE_psmeval"))
        .current_dir(dir.path())
        .args(["evaluate", "study.toml", "--out", "c", "--quiet"])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(read(&a.join("results.json")), read(&c.join("results.json")), "results.json depends on the cwd");
    for f in [
        "report.html",
        "report.md",
        "tables/balance.csv",
        "tables/coefficients.csv",
        "tables/effects.csv",
        "tables/missing.csv",
        "tables/gap_closing.csv",
    ] {
        assert!(a.join(f).metadata().unwrap().len() > 100, "{f} missing or empty");
    }
    let md = String::from_utf8(read(&a.join("report.md"))).unwrap();
    for section in ["## Headline results", "Missing data by year and group", "### Gap closing", ". Sensitivity"] {
        assert!(md.contains(section), "report.md has no `{section}`");
    }
    for fig in [
        "love",
        "scores",
        "trend-ks2-maths",
        "effects-ks2-maths",
        "schools-ks2-maths",
        "effects-ks2-expected",
        "gap-ks2-maths-fsm-pupils",
        "sensitivity",
    ] {
        for ext in ["svg", "png"] {
            assert!(a.join(format!("figures/{fig}.{ext}")).exists(), "figure {fig}.{ext} missing");
        }
    }
    let r = json(&a.join("results.json"));
    assert_eq!(r["matching"]["n"]["matched_treated"], 20);
    assert_eq!(r["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(r["inputs"][0]["sha256"].as_str().unwrap().len(), 64);
    // 2 outcomes x (all pupils + FSM pupils).
    assert_eq!(r["outcomes"].as_array().unwrap().len(), 4);
    let fsm = r["outcomes"].as_array().unwrap().iter().find(|o| o["subgroup"] == "FSM pupils").unwrap();
    assert!(fsm["notes"][0].as_str().unwrap().contains("`fsm` is constant"), "{}", fsm["notes"]);
    // The true effect (0.5 latent SD, about 0.5 SD of the within-year standardized score) is recovered: the
    // pooled 95% CI covers it and excludes 0, with a Satterthwaite df.
    let e = pooled(&r, "KS2 maths");
    let (lo, hi) = (e["ci_low"].as_f64().unwrap(), e["ci_high"].as_f64().unwrap());
    assert!(lo < 0.5 && 0.5 < hi && lo > 0.0, "the pooled 95% CI {lo}..{hi} should cover the truth 0.5: {e}");
    assert!(e["df"].as_f64().unwrap() > 1.0);
    // The default inference is CR2 clustered by school: df on the scale of the 20 lead schools, not of the
    // thousands of pupils, with the model-based test kept beside it.
    assert_eq!(e["inference"], "CR2", "{e}");
    assert!(e["df"].as_f64().unwrap() < 100.0, "CR2 df should reflect the number of schools: {e}");
    assert!(e["model_based"]["std_error"].as_f64().unwrap() > 0.0, "{e}");
    let ks2 = &r["outcomes"][0];
    assert_eq!(ks2["inference"]["clusters"], ks2["n_schools"]);
    assert_eq!(ks2["pretrend"]["df_num"], 1, "one pre-programme contrast (2013 vs 2014): {}", ks2["pretrend"]);
    assert_eq!(ks2["event_study"].as_array().unwrap().len(), 4, "every year but the reference year 2014");
    assert!(ks2["model"]["robust"]["fixed_effects"].as_array().unwrap().len() > 5);
    let model = &r["outcomes"][0]["model"];
    assert_eq!(model["family"], "gaussian");
    assert!(model["fixed_effects"].as_array().unwrap().iter().any(|f| f["term"] == "factor(year)2016:group"));
    let b = pooled(&r, "KS2 expected");
    assert!(b["estimate"].as_f64().unwrap() > 0.0, "{b}");
    assert_eq!(b["inference"], "CR2", "logistic effects are CR2 (working model) by default: {b}");
    assert!(b["df"].as_f64().unwrap() < 100.0 && b["model_based"]["df"].is_null(), "{b}");
    // ... and in percentage points by g-computation, with the same inference.
    let ks2e = r["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "KS2 expected" && o["subgroup"].is_null())
        .unwrap();
    let pp = ks2e["percentage_points"].as_array().unwrap();
    assert_eq!(pp.len(), 4, "three programme years and the pooled effect: {pp:?}");
    let pooled_pp = pp.iter().find(|e| e["year"] == "pooled").unwrap();
    let est = pooled_pp["estimate"].as_f64().unwrap();
    assert!(est > 1.0 && est < 40.0, "a 0.5 SD effect is some percentage points: {pooled_pp}");
    assert_eq!(pooled_pp["inference"], "CR2");
    assert!(pooled_pp["ci_low"].as_f64().unwrap() < est && est < pooled_pp["ci_high"].as_f64().unwrap());
    let html = String::from_utf8(read(&a.join("report.html"))).unwrap();
    assert!(html.contains("<svg") && !html.contains("src=\"figures/"), "report.html must embed its figures");
    // `psmeval report` rebuilds the same report from results.json alone, without refitting.
    let d = dir.path().join("d");
    let results = a.join("results.json");
    ok(&psmeval(&["report", results.to_str().unwrap(), "--out", d.to_str().unwrap(), "--quiet"], None));
    for f in ["report.md", "report.html", "tables/balance.csv", "tables/effects.csv", "tables/gap_closing.csv"] {
        assert_eq!(read(&a.join(f)), read(&d.join(f)), "{f} rebuilt from results.json differs");
    }
    for fig in
        ["love.svg", "trend-ks2-maths.svg", "schools-ks2-maths.svg", "effects-ks2-expected.png", "sensitivity.png"]
    {
        assert_eq!(read(&a.join("figures").join(fig)), read(&d.join("figures").join(fig)), "{fig} differs");
    }
    // A file that is not an evaluation's results is refused, naming it, and nothing is written.
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, "{\"outcomes\": []}").unwrap();
    let e = dir.path().join("e");
    let out = psmeval(&["report", bogus.to_str().unwrap(), "--out", e.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus.json"));
    assert!(!e.exists());
}

#[test]
fn evaluate_without_an_effect_covers_zero() {
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path(), 400, 20, 0.0);
    let out = dir.path().join("out");
    ok(&psmeval(&["evaluate", study.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"], None));
    let e = pooled(&json(&out.join("results.json")), "KS2 maths");
    let (lo, hi) = (e["ci_low"].as_f64().unwrap(), e["ci_high"].as_f64().unwrap());
    assert!(lo < 0.0 && 0.0 < hi, "no true effect, but the 95% CI is {lo}..{hi}");
}

/// `evaluate --example` evaluates its population in memory while it writes the data: the same results.json
/// (inputs' digests included) and report as evaluating the written study file, and the digests are those
/// of the written files.
#[test]
fn the_example_in_memory_is_the_written_study() {
    let dir = tempfile::tempdir().unwrap();
    let (example, rerun) = (dir.path().join("example"), dir.path().join("rerun"));
    let args = ["evaluate", "--example", "--schools", "300", "--seed", "11", "--quiet", "--out"];
    ok(&psmeval(&[&args[..], &[example.to_str().unwrap()]].concat(), None));
    let study = example.join("study.toml");
    ok(&psmeval(&["evaluate", study.to_str().unwrap(), "--out", rerun.to_str().unwrap(), "--quiet"], None));
    assert!(read(&example.join("results.json")) == read(&rerun.join("results.json")));
    assert!(read(&example.join("report.md")) == read(&rerun.join("report.md")));
    let results = json(&example.join("results.json"));
    for (input, file) in results["inputs"].as_array().unwrap().iter().zip(["schools.csv", "pupils.csv"]) {
        let digest: String =
            Sha256::digest(read(&example.join("data").join(file))).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(input["sha256"].as_str().unwrap(), digest, "{file}");
    }
}

#[test]
fn evaluate_reports_study_file_problems_by_field_before_computing() {
    let dir = tempfile::tempdir().unwrap();
    let study = study(dir.path(), 200, 10, 0.1);
    let text = std::fs::read_to_string(&study).unwrap();
    let cases = [
        (text.replace("\"prior\"]", "\"priorr\"]"), "model.covariates"),
        (text.replace("ratio = 5", "ratio = 0"), "matching.ratio"),
        (text.replace("programme_start = 2015", "programme_start = 2013"), "years.programme_start"),
        (text.replace("idaci +", "idaci + ("), "matching.formula"),
        (text.replace("column = \"maths\"", "column = \"english\""), "outcomes"),
        (text.replace("[years]", "[years]\nbogus = 1"), "bogus"),
        (text.replace("data/pupils.csv", "data/missing.csv"), "missing.csv"),
        (format!("{text}\n[inference]\nmethod = \"jackknife\"\n"), "jackknife"),
        (format!("{text}\n[inference]\nmethod = \"permutation\"\npermutations = 5\n"), "inference.permutations"),
        (
            text.replace("ratio = 5", "ratio = 5\nreplace = true") + "\n[inference]\ncluster = \"matched_set\"\n",
            "inference.cluster",
        ),
    ];
    for (i, (bad, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, bad).unwrap();
        let out_dir = dir.path().join(format!("out{i}"));
        let out = psmeval(&["evaluate", path.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "-q"], None);
        assert_eq!(out.status.code(), Some(2), "case {i}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "case {i}: the message should name `{field}`: {err}");
        assert!(!out_dir.exists(), "case {i}: nothing may be written for an invalid study");
    }
}

#[test]
fn match_and_lmm_commands_write_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    study(dir.path(), 300, 10, 0.1);
    let data = dir.path().join("data");
    let matched = dir.path().join("matched.csv");
    let mjson = dir.path().join("match.json");
    let out = psmeval(
        &[
            "match",
            "--data",
            data.join("schools.csv").to_str().unwrap(),
            "--id",
            "school_id",
            "--formula",
            "lead ~ pct_fsm + prior_attainment + factor(region)",
            "--ratio",
            "3",
            "--caliper",
            "0.2",
            "--out",
            matched.to_str().unwrap(),
            "--json",
            mjson.to_str().unwrap(),
            "--love-plot",
            dir.path().join("love.svg").to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Balance after matching") && stdout.contains("factor(region)"), "{stdout}");
    let m = json(&mjson);
    let n = &m["n"];
    assert_eq!(n["all_treated"], 10);
    let unmatched = m["unmatched_treated"].as_array().unwrap().len();
    assert_eq!(n["matched_treated"].as_u64().unwrap() as usize + unmatched, 10, "unmatched leads are listed");
    let rows = std::fs::read_to_string(&matched).unwrap().lines().count() - 1;
    assert_eq!(rows as u64, n["matched_treated"].as_u64().unwrap() + n["matched_control"].as_u64().unwrap());
    assert!(dir.path().join("love.svg").exists());

    // lmm: JSON in issue #4's shape, identical bytes on a rerun, ranef CSV, clear errors.
    let pupils = data.join("pupils.csv");
    let fit = |json: &Path, extra: &[&str]| {
        let mut args = vec![
            "lmm",
            "--data",
            pupils.to_str().unwrap(),
            "--formula",
            "maths ~ factor(year) + fsm + prior + (1 | school_id)",
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        psmeval(&args, None)
    };
    let (j1, j2) = (dir.path().join("fit1.json"), dir.path().join("fit2.json"));
    let ranef = dir.path().join("ranef.csv");
    let out = fit(&j1, &["--ranef", ranef.to_str().unwrap()]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("REML"));
    ok(&fit(&j2, &[]));
    assert_eq!(read(&j1), read(&j2), "lmm JSON must be reproducible");
    let f = json(&j1);
    for key in ["formula", "reml", "n_obs", "groups", "log_likelihood", "criterion", "aic", "bic", "sigma"] {
        assert!(!f[key].is_null(), "missing {key}");
    }
    assert_eq!(f["random_effects"].as_array().unwrap().last().unwrap()["group"], "Residual");
    assert_eq!(f["groups"]["school_id"], 300);
    assert_eq!(std::fs::read_to_string(&ranef).unwrap().lines().count(), 301);
    let out = fit(&dir.path().join("ml.json"), &["--ml"]);
    ok(&out);
    assert_eq!(json(&dir.path().join("ml.json"))["reml"], false);
    let bin = dir.path().join("bin.json");
    let out = psmeval(
        &[
            "lmm",
            "--data",
            pupils.to_str().unwrap(),
            "--family",
            "binomial",
            "--formula",
            "expected ~ fsm + prior + (1 | school_id)",
            "--json",
            bin.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Odds ratio"));
    assert_eq!(json(&bin)["family"], "binomial");
    for (formula, family, needle) in [
        ("maths ~ fsm + (1 | nowhere)", "gaussian", "nowhere"),
        ("maths ~ fsm +", "gaussian", "--formula"),
        ("maths ~ fsm", "gaussian", "random-effects term"),
        ("maths ~ fsm + (1 | school_id)", "binomial", "must be 0 or 1"),
    ] {
        let out = psmeval(&["lmm", "--data", pupils.to_str().unwrap(), "--formula", formula, "--family", family], None);
        assert_eq!(out.status.code(), Some(2), "{formula}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{formula}: {err}");
    }
    // Prior weights: positive ones fit (and change the fit); negative ones and proportions outside [0, 1]
    // are named.
    let wj = dir.path().join("w.json");
    ok(&fit(&wj, &["--weights", "key_stage"]));
    assert_ne!(json(&wj)["log_likelihood"], f["log_likelihood"]);
    let out = fit(&dir.path().join("bad.json"), &["--weights", "prior"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weights must be positive"));
    let out = psmeval(
        &[
            "lmm",
            "--data",
            pupils.to_str().unwrap(),
            "--family",
            "binomial",
            "--weights",
            "key_stage",
            "--formula",
            "maths ~ fsm + (1 | school_id)",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("proportion in [0, 1]"));
}

#[test]
fn lmm_cr2_matches_club_sandwich_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../multilevel/tests/data/sleepstudy_did.csv");
    let json_path = dir.path().join("fit.json");
    let out = psmeval(
        &[
            "lmm",
            "--data",
            data,
            "--formula",
            "Reaction ~ factor(period) * g + (1 | Subject)",
            "--vcov",
            "cr2",
            "--json",
            json_path.to_str().unwrap(),
            "-q",
        ],
        None,
    );
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Cluster-robust (CR2) fixed effects, 18 clusters of `Subject`"), "{stdout}");
    let fit = json(&json_path);
    let robust = &fit["robust"];
    assert_eq!(robust["type"], "CR2");
    assert_eq!(robust["cluster"], "Subject");
    assert_eq!(robust["clusters"], 18);
    // clubSandwich 0.5.8: coef_test(fit, vcov = "CR2", test = "Satterthwaite"), the intercept and the g term
    // (crates/multilevel/tests/reference/cr2_reference.json, model `did`).
    let se = robust["fixed_effects"][0]["std_error"].as_f64().unwrap();
    assert!((se / 8.489960641099028 - 1.0).abs() < 1e-6, "CR2 SE {se}");
    let df = robust["fixed_effects"][4]["df"].as_f64().unwrap();
    assert!((df - 16.0).abs() < 1e-3, "CR2 df of g {df}");
    // A cluster that splits the grouping factor, and CR2 for a logistic model, are refused with exit 2.
    let bad = psmeval(
        &["lmm", "--data", data, "--formula", "Reaction ~ Days + (1 | Subject)", "--vcov", "cr2", "--cluster", "Days"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`Subject`"), "{}", String::from_utf8_lossy(&bad.stderr));
    let glmm = cbpp_logistic(&["--vcov", "cr2"]);
    assert_eq!(glmm.status.code(), Some(2));
}

#[test]
fn lmm_ddf_lme4_skips_the_satterthwaite_df_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../multilevel/tests/data/penicillin.csv");
    let formula = "diameter ~ 1 + (1 | plate) + (1 | sample)";
    let fit = |ddf: Option<&str>, name: &str| {
        let path = dir.path().join(name);
        let mut args = vec!["lmm", "--data", data, "--formula", formula, "--json", path.to_str().unwrap(), "-q"];
        if let Some(d) = ddf {
            args.extend(["--ddf", d]);
        }
        let out = psmeval(&args, None);
        ok(&out);
        (String::from_utf8_lossy(&out.stdout).into_owned(), json(&path))
    };
    let (text, default) = fit(None, "default.json");
    assert!(text.contains("(Satterthwaite df)") && text.contains("Pr(>|t|)"), "{text}");
    assert!(default.get("df_method").is_none(), "the default is left out of the record");
    assert!(default["fixed_effects"][0]["df"].as_f64().unwrap() > 1.0);
    let (same, explicit) = fit(Some("satterthwaite"), "explicit.json");
    assert_eq!((&same, &explicit), (&text, &default), "--ddf satterthwaite is the default");
    let (text, lme4) = fit(Some("lme4"), "lme4.json");
    assert!(text.contains("t tests without df, as lme4") && !text.contains("Pr(>|t|)"), "{text}");
    assert_eq!(lme4["df_method"], "lme4");
    let (a, b) = (&default["fixed_effects"][0], &lme4["fixed_effects"][0]);
    assert!(b["df"].is_null() && b["p_value"].is_null(), "{b}");
    for k in ["estimate", "std_error", "t_value"] {
        assert_eq!(a[k], b[k], "{k}");
    }
    for k in ["theta", "criterion", "random_effects", "sigma"] {
        assert_eq!(default[k], lme4[k], "{k}");
    }
    // Logistic models have Wald z tests: asking for df is an error naming the option.
    let glmm = cbpp_logistic(&["--ddf", "lme4"]);
    assert_eq!(glmm.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&glmm.stderr).contains("--ddf applies to linear models"));
}

/// `psmeval lmm` on lme4's cbpp data with its logistic model, plus `extra` options.
fn cbpp_logistic(extra: &[&str]) -> std::process::Output {
    let cbpp = concat!(env!("CARGO_MANIFEST_DIR"), "/../multilevel/tests/data/cbpp.csv");
    let formula = "cbind(incidence, failures) ~ period + (1 | herd)";
    let mut args = vec!["lmm", "--family", "binomial", "--data", cbpp, "--formula", formula];
    args.extend_from_slice(extra);
    psmeval(&args, None)
}
