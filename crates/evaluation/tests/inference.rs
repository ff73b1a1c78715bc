//! The study's `[inference]` choices on one small simulated population: CR2 by school (the default), CR2 by
//! matched set, the wild cluster bootstrap, randomization inference and the model's own variance each label
//! their effects, keep the model-based test beside the robust one, and give df on the scale of clusters rather
//! than pupils.

use psmeval_evaluation::{Evaluation, Plan, Study, evaluate, population_tables};
use psmeval_synth::{SimConfig, simulate};

const STUDY: &str = r#"
[data]
schools = "schools.csv"
pupils = "pupils.csv"
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
"#;

fn run(inference: &str) -> Evaluation {
    let pop =
        simulate(&SimConfig { schools: 160, leads: 10, effect: 0.3, mean_cohort: 20.0, seed: 3, ..SimConfig::small() })
            .unwrap();
    let (schools, pupils) = population_tables(&pop).unwrap();
    let plan = Plan::new(Study::from_toml(&format!("{STUDY}\n[inference]\n{inference}\n")).unwrap()).unwrap();
    evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).unwrap()
}

#[test]
fn every_inference_method_labels_its_effects() {
    let cr2 = run("method = \"cr2\"");
    let o = &cr2.outcomes[0];
    let pooled = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(pooled.inference, "CR2");
    assert_eq!(o.inference.as_ref().unwrap().clusters, Some(o.n_schools));
    assert!(pooled.df < 45.0, "CR2 df on the scale of 40 schools: {}", pooled.df);
    let model = pooled.model_based.as_ref().unwrap();
    assert!(model.df > pooled.df);

    let sets = run("cluster = \"matched_set\"");
    let o = &sets.outcomes[0];
    assert_eq!(o.inference.as_ref().unwrap().clusters, Some(10), "10 matched sets");
    let p_sets = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert!(p_sets.df < 10.0, "df on the scale of 10 sets: {}", p_sets.df);
    assert_eq!(p_sets.estimate, pooled.estimate, "the clustering changes the SE, not the estimate");

    let wild = run("method = \"wild\"\nbootstrap_draws = 199\nseed = 5");
    let o = &wild.outcomes[0];
    let w = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(w.inference, "wild bootstrap");
    assert!(w.ci_low < w.estimate && w.estimate < w.ci_high);
    // The bootstrap-t and the CR2 t test agree closely here (40 schools, 10 treated).
    assert!((w.p_value - pooled.p_value).abs() < 0.15, "wild p {} vs CR2 p {}", w.p_value, pooled.p_value);
    let (ww, wc) = (w.ci_high - w.ci_low, pooled.ci_high - pooled.ci_low);
    assert!((ww / wc - 1.0).abs() < 0.3, "wild CI width {ww} vs CR2 {wc}");
    assert_eq!(run("method = \"wild\"\nbootstrap_draws = 199\nseed = 5").outcomes[0].effects, o.effects);

    // Randomization inference within the 10 matched sets (1 + 3 schools each) and among all 40 schools.
    let perm = run("method = \"permutation\"\npermutations = 199\nseed = 5");
    let o = &perm.outcomes[0];
    let r = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(r.inference, "permutation");
    assert_eq!(o.inference.as_ref().unwrap().method, "permutation");
    assert_eq!((r.estimate, r.std_error), (pooled.estimate, pooled.std_error), "estimate and CR2 SE kept");
    assert!(r.ci_low < r.estimate && r.estimate < r.ci_high);
    assert!((1.0 / 200.0..=1.0).contains(&r.p_value));
    let (rw, wc) = (r.ci_high - r.ci_low, pooled.ci_high - pooled.ci_low);
    assert!((rw / wc - 1.0).abs() < 0.5, "randomization CI width {rw} vs CR2 {wc}");
    // Every per-year row has its own interval around its estimate; the event study keeps CR2.
    for e in &o.effects {
        assert!(e.ci_low < e.estimate && e.estimate < e.ci_high, "{e:?}");
    }
    assert!(o.event_study.iter().all(|e| e.inference == "CR2"));
    assert_eq!(run("method = \"permutation\"\npermutations = 199\nseed = 5").outcomes[0].effects, o.effects);
    let all = run("method = \"permutation\"\npermute = \"all\"\npermutations = 199\nseed = 5");
    let a = all.outcomes[0].effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(a.estimate, r.estimate);
    assert_ne!((a.ci_low, a.ci_high), (r.ci_low, r.ci_high), "another scheme, other draws");
    // The studentized statistic: the same draws, another interval around the same estimate.
    let est = run("method = \"permutation\"\nstatistic = \"studentized\"\npermutations = 199\nseed = 5");
    let e = est.outcomes[0].effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(e.estimate, r.estimate);
    assert!(e.ci_low < e.estimate && e.estimate < e.ci_high);
    assert_ne!((e.ci_low, e.ci_high), (r.ci_low, r.ci_high));

    let own = run("method = \"model\"");
    let m = own.outcomes[0].effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(m.inference, "model");
    assert!(m.model_based.is_none() && m.df > pooled.df);
    assert!(
        own.outcomes[0]
            .model
            .as_ref()
            .map(|r| matches!(r, psmeval_evaluation::ModelRecord::Linear(l) if l.robust.is_none()))
            .unwrap()
    );
}

#[test]
fn too_few_bootstrap_draws_are_refused_by_the_plan() {
    let e = Plan::new(
        Study::from_toml(&format!("{STUDY}\n[inference]\nmethod = \"wild\"\nbootstrap_draws = 20\n")).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("inference.bootstrap_draws"), "{e}");
    let plan = |extra: &str| {
        Plan::new(Study::from_toml(&format!("{STUDY}\n[inference]\nmethod = \"permutation\"\n{extra}")).unwrap())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = plan("permutations = 20\n").unwrap_err();
    assert!(e.contains("inference.permutations"), "{e}");
    let replace = STUDY.replace("ratio = 3", "ratio = 3\nreplace = true");
    let e = Plan::new(
        Study::from_toml(&format!("{replace}\n[inference]\nmethod = \"permutation\"\npermute = \"matched_set\"\n"))
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("inference.permute") && e.contains("without replacement"), "{e}");
    assert!(plan("permute = \"all\"\n").is_ok());
}

/// The defaults follow the design: CR2 (and `matched_set`) without replacement; with replacement, where CR2
/// intervals undercover (benches/README.md), randomization among all matched schools, flagged as the
/// design's default; a method the study names is kept.
#[test]
fn matching_with_replacement_defaults_to_randomization_among_all_schools() {
    use psmeval_evaluation::study::{InferenceMethod, PermuteAmong};
    let without = Study::from_toml(STUDY).unwrap().inference;
    assert_eq!(
        (without.method, without.permute, without.replacement_default),
        (InferenceMethod::Cr2, PermuteAmong::MatchedSet, false)
    );
    let replace = STUDY.replace("ratio = 3", "ratio = 3\nreplace = true");
    let with = Study::from_toml(&replace).unwrap().inference;
    assert_eq!(
        (with.method, with.permute, with.replacement_default),
        (InferenceMethod::Permutation, PermuteAmong::All, true)
    );
    let named = Study::from_toml(&format!("{replace}\n[inference]\nmethod = \"cr2\"\n")).unwrap().inference;
    assert_eq!((named.method, named.replacement_default), (InferenceMethod::Cr2, false));
    // The flag is psmeval's to set, not the study file's.
    let e = Study::from_toml(&format!("{STUDY}\n[inference]\nreplacement_default = true\n")).unwrap_err();
    assert!(e.to_string().contains("inference.replacement_default"), "{e}");
    // End to end: the default study with replacement reports randomization intervals.
    let pop =
        simulate(&SimConfig { schools: 160, leads: 10, effect: 0.3, mean_cohort: 20.0, seed: 3, ..SimConfig::small() })
            .unwrap();
    let (schools, pupils) = population_tables(&pop).unwrap();
    let plan = Plan::new(Study::from_toml(&format!("{replace}\n[inference]\npermutations = 199\n")).unwrap()).unwrap();
    let ev = evaluate(&plan, &schools, &pupils, Vec::new(), String::new(), &|_| {}).unwrap();
    let pooled = ev.outcomes[0].effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert_eq!(pooled.inference, "permutation");
    assert!(pooled.ci_low < pooled.estimate && pooled.estimate < pooled.ci_high);
}

/// Two outcomes (KS2 maths primary, KS1 maths secondary) and the FSM subgroup, with a quarter of the
/// treatment schools' KS2 results of 2016 removed: the headline table with Holm-adjusted secondary p values
/// (against a hand computation), the gap-closing estimate (against a direct fit of its formula with the
/// contrast written out by hand) and the missing-data counts by year and group (against a direct count).
#[test]
fn headline_gap_closing_and_missing_data_end_to_end() {
    use std::collections::HashMap;

    use psmeval_evaluation::model::{ModelOptions, fit_formula};
    use psmeval_frame::{Column, Table, parse_formula};
    use psmeval_multilevel::MixedModel;

    let pop = simulate(&SimConfig {
        schools: 160,
        leads: 10,
        effect: 0.3,
        mean_cohort: 20.0,
        seed: 11,
        ..SimConfig::small()
    })
    .unwrap();
    let (schools, pupils) = population_tables(&pop).unwrap();
    let lead: HashMap<i64, bool> =
        pop.schools.school_id.iter().zip(&pop.schools.lead).map(|(&s, &l)| (s, l == 1)).collect();
    let num = |t: &Table, c: &str| t.numeric(c).unwrap().to_vec();
    let (ks, year, school) = (num(&pupils, "key_stage"), num(&pupils, "year"), num(&pupils, "school_id"));
    // Remove every fourth KS2 result of 2016 in the treatment schools.
    let mut maths = num(&pupils, "maths");
    let mut k = 0;
    for i in 0..maths.len() {
        if ks[i] == 2.0 && year[i] == 2016.0 && lead[&(school[i] as i64)] {
            if k % 4 == 0 {
                maths[i] = f64::NAN;
            }
            k += 1;
        }
    }
    let mut injected = Table::new();
    for (name, col) in pupils.iter() {
        let col = if name == "maths" { Column::Numeric(maths.clone()) } else { col.clone() };
        injected.push(name, col).unwrap();
    }
    let study = r#"
[data]
schools = "schools.csv"
pupils = "pupils.csv"
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
primary = true
[[outcomes]]
name = "KS1 maths"
column = "maths"
filter = { key_stage = 1 }
[[subgroups]]
name = "FSM"
filter = { fsm = 1 }
"#;
    let plan = Plan::new(Study::from_toml(study).unwrap()).unwrap();
    let ev = evaluate(&plan, &schools, &injected, Vec::new(), String::new(), &|_| {}).unwrap();

    // Headline: four rows, the primary first and unadjusted, the secondary p values Holm-adjusted together.
    assert_eq!(ev.headline.len(), 4);
    let primary: Vec<_> = ev.headline.iter().filter(|h| h.primary).collect();
    assert_eq!(primary.len(), 1);
    assert_eq!((primary[0].outcome.as_str(), primary[0].subgroup.as_deref()), ("KS2 maths", None));
    assert!(primary[0].p_holm.is_none());
    let mut secondary: Vec<_> = ev.headline.iter().filter(|h| !h.primary).collect();
    secondary.sort_by(|a, b| a.p_value.total_cmp(&b.p_value));
    let m = secondary.len() as f64;
    let mut running: f64 = 0.0;
    for (j, h) in secondary.iter().enumerate() {
        running = running.max(((m - j as f64) * h.p_value).min(1.0));
        let got = h.p_holm.unwrap();
        assert!((got - running).abs() < 1e-12, "{} {:?}: Holm {got} vs {running}", h.outcome, h.subgroup);
    }
    for h in &ev.headline {
        let o = ev.outcomes.iter().find(|o| o.name == h.outcome && o.subgroup == h.subgroup).unwrap();
        let pooled = o.effects.iter().find(|e| e.year.is_pooled()).unwrap();
        assert_eq!(h.p_value, pooled.p_value);
        assert_eq!(h.effect_size, pooled.effect_size);
    }

    // Missing data by year and group, against a direct count in the matched schools.
    let weight: HashMap<String, f64> =
        ev.matching.units.iter().filter(|u| u.weight > 0.0).map(|u| (u.id.to_string(), u.weight)).collect();
    let ks2 = &ev.outcomes.iter().find(|o| o.name == "KS2 maths" && o.subgroup.is_none()).unwrap().counts;
    let (fsm, prior) = (num(&injected, "fsm"), num(&injected, "prior"));
    for c in &ks2.by_year {
        let rows: Vec<usize> = (0..maths.len())
            .filter(|&i| {
                ks[i] == 2.0
                    && year[i] as i64 == c.year
                    && weight.contains_key(&(school[i] as i64).to_string())
                    && lead[&(school[i] as i64)] == c.treated
            })
            .collect();
        assert_eq!(c.pupils, rows.len(), "{} {}", c.year, c.treated);
        assert_eq!(c.with_outcome, rows.iter().filter(|&&i| maths[i].is_finite()).count());
        assert_eq!(
            c.analysed,
            rows.iter().filter(|&&i| maths[i].is_finite() && fsm[i].is_finite() && prior[i].is_finite()).count()
        );
    }
    let hit = ks2.by_year.iter().find(|c| c.year == 2016 && c.treated).unwrap();
    let share = hit.with_outcome as f64 / hit.pupils as f64;
    assert!((share - 0.75).abs() < 0.01, "a quarter removed: {share}");
    assert_eq!(ks2.by_year.len(), 10, "5 years × 2 groups");

    // Gap closing: one model per outcome for the FSM subgroup, on all pupils.
    assert_eq!(ev.gap_closing.len(), 2);
    let g = ev.gap_closing.iter().find(|g| g.outcome == "KS2 maths").unwrap();
    assert!(g.skipped.is_none(), "{:?}", g.skipped);
    assert_eq!(g.variable, "fsm");
    assert_eq!(g.formula, "outcome ~ factor(year) * group * fsm + prior + (1 | school_id) + (1 | school_id:year)");
    // The same model fitted directly to a table built here, and the pooled contrast written out by hand:
    // mean over 2015–2017 of e[Y:group:fsm] minus the mean over 2013–2014 (e[2013:group:fsm] = 0).
    let rows: Vec<usize> = (0..maths.len())
        .filter(|&i| {
            ks[i] == 2.0
                && (2013.0..=2017.0).contains(&year[i])
                && weight.contains_key(&(school[i] as i64).to_string())
                && maths[i].is_finite()
                && fsm[i].is_finite()
                && prior[i].is_finite()
        })
        .collect();
    assert_eq!(rows.len(), g.n_pupils);
    let pick = |v: &[f64]| Column::Numeric(rows.iter().map(|&i| v[i]).collect());
    let group: Vec<f64> = school.iter().map(|s| f64::from(u8::from(lead[&(*s as i64)]))).collect();
    let table = Table::new()
        .with("outcome", pick(&maths))
        .unwrap()
        .with("year", pick(&year))
        .unwrap()
        .with("group", pick(&group))
        .unwrap()
        .with("school_id", pupils.take_rows(&rows).column("school_id").unwrap().clone())
        .unwrap()
        .with("fsm", pick(&fsm))
        .unwrap()
        .with("prior", pick(&prior))
        .unwrap();
    let w: Vec<f64> = rows.iter().map(|&i| weight[&(school[i] as i64).to_string()]).collect();
    let formula = parse_formula(&g.formula).unwrap();
    let (fit, _) =
        fit_formula(&formula, &g.formula, &table, &w, &ModelOptions::new(psmeval_evaluation::Family::Gaussian))
            .unwrap();
    let psmeval_evaluation::model::Fitted::Linear(lmm) = &fit else { panic!("a linear model") };
    let e = |y: i64| {
        lmm.fixed_effects().iter().find(|f| f.term == format!("factor(year){y}:group:fsm")).map_or(0.0, |f| f.estimate)
    };
    let by_hand = (e(2015) + e(2016) + e(2017)) / 3.0 - (e(2013) + e(2014)) / 2.0;
    let pooled = g.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    assert!((pooled.estimate - by_hand).abs() < 1e-8, "gap closing {} vs direct {by_hand}", pooled.estimate);
    assert_eq!(pooled.inference, "CR2");
    assert!(pooled.ci_low < pooled.estimate && pooled.estimate < pooled.ci_high);
    assert!(g.n_subgroup_pupils > 0 && g.n_subgroup_pupils < g.n_pupils);

    // Sensitivity of the primary outcome: the main row is the reported pooled effect, the model-based row
    // its model-based test, and each refit changes one choice.
    let sens = ev.sensitivity.as_ref().unwrap();
    assert_eq!(sens.outcome, "KS2 maths");
    let names: Vec<&str> = sens.rows.iter().map(|r| r.analysis.as_str()).collect();
    assert_eq!(
        names,
        [
            "Main analysis",
            "Model-based SEs",
            "No cohort term",
            "Random slope on year",
            "Before 2016 only",
            "Caliper 0.2 SD"
        ]
    );
    let main = ev.outcomes.iter().find(|o| o.name == "KS2 maths" && o.subgroup.is_none()).unwrap();
    let pooled = main.effects.iter().find(|e| e.year.is_pooled()).unwrap();
    let row = |n: &str| sens.rows.iter().find(|r| r.analysis == n).unwrap();
    assert_eq!((row("Main analysis").estimate, row("Main analysis").ci_low), (pooled.estimate, pooled.ci_low));
    let mb = pooled.model_based.as_ref().unwrap();
    assert_eq!((row("Model-based SEs").estimate, row("Model-based SEs").std_error), (pooled.estimate, mb.std_error));
    for r in &sens.rows {
        assert!(r.skipped.is_none(), "{}: {:?}", r.analysis, r.skipped);
        assert!(r.ci_low < r.estimate && r.estimate < r.ci_high, "{}", r.analysis);
    }
    assert_ne!(row("No cohort term").estimate, pooled.estimate);
    // 2013–2015: three fifths of the years.
    let pre = row("Before 2016 only");
    assert!(pre.n_pupils < main.n_pupils * 7 / 10 && pre.n_pupils > main.n_pupils / 2, "{}", pre.n_pupils);
    assert!(row("Caliper 0.2 SD").n_schools <= main.n_schools);
}
