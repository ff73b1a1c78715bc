//! `psmeval value-added`: each school's contextual value-added (see
//! [`psmeval_evaluation::value_added`]), written as `value_added.csv`, `results.json`, a caterpillar plot
//! and a report.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use psmeval_evaluation::value_added::{Breakdown, value_added};
use psmeval_frame::RowFilter;

use crate::args::ValueAddedArgs;
use crate::error::InputError;
use crate::progress::Progress;
use crate::table::{Outputs, check_output_dir, load_table};

/// The example's model: KS2 maths on prior attainment and pupil characteristics.
const EXAMPLE_FORMULA: &str = "maths ~ prior + fsm + eal + sen + female + (1 | school_id)";

/// Runs the command.
pub fn run(a: &ValueAddedArgs) -> Result<()> {
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("out/value-added"));
    check_output_dir(&out)?;
    let progress = Progress::new(a.quiet);
    let step = progress.step("loading the pupils");
    let (pupils, schools, source, mut filters) = match &a.pupils {
        Some(path) => {
            let schools = a.schools.as_ref().map(|p| load_table(p)).transpose()?;
            (load_table(path)?, schools, path.display().to_string(), Vec::new())
        }
        None => {
            let (pop, schools, pupils) = crate::population::example_tables()?;
            let last = pop.truth.config.last_year.to_string();
            let example = vec![
                RowFilter { column: "year".into(), value: last },
                RowFilter { column: "key_stage".into(), value: "2".into() },
            ];
            (
                pupils,
                Some(schools),
                "the example pupils".to_string(),
                if a.filters.is_empty() { example } else { Vec::new() },
            )
        }
    };
    let example = a.pupils.is_none();
    let groups: Vec<String> = if a.groups.is_empty() && example {
        ["fsm", "eal", "sen", "female"].map(String::from).to_vec()
    } else {
        a.groups.clone()
    };
    let by = a.by.clone().or_else(|| example.then(|| "region".to_string()));
    filters.extend(a.filters.iter().cloned());
    let families = match &a.family_file {
        None => None,
        Some(path) => {
            let t = load_table(path)?;
            let at = |e: psmeval_frame::TableError| InputError::new(format!("{}: {e}", path.display()));
            let (school, member) = (t.column("school_id").map_err(at)?, t.column("member_id").map_err(at)?);
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for i in 0..t.n_rows() {
                if let (Some(s), Some(m)) = (school.text_at(i), member.text_at(i)) {
                    map.entry(s).or_default().push(m);
                }
            }
            Some(map)
        }
    };
    let formula = a.formula.clone().unwrap_or_else(|| EXAMPLE_FORMULA.to_string());
    let areas = match (&by, &schools) {
        (Some(by), Some(s)) if !pupils.has(by) => {
            let school = match &a.school {
                Some(s) => s.clone(),
                None => psmeval_frame::parse_formula(&formula)
                    .ok()
                    .and_then(|f| f.random.first().map(|r| r.group.join(":")))
                    .unwrap_or_else(|| "school_id".to_string()),
            };
            let at = |e: psmeval_frame::TableError| InputError::new(format!("the school table: {e}"));
            let ids = s.column(&school).map_err(at)?;
            let area = s.column(by).map_err(at)?;
            Some((0..s.n_rows()).filter_map(|i| Some((ids.text_at(i)?, area.text_at(i)?))).collect::<HashMap<_, _>>())
        }
        _ => None,
    };
    step.finish();
    let breakdown = Breakdown { groups: &groups, by: by.as_deref(), area_of_school: areas.as_ref() };
    let step = progress.step("fitting the model");
    let va = value_added(&pupils, &formula, a.school.as_deref(), &filters, families.as_ref(), &breakdown)
        .map_err(|e| InputError::new(format!("{source}: {e}")))?;
    step.finish();
    if let Some(id) = &a.highlight
        && !va.schools.iter().any(|s| s.id == *id)
    {
        return Err(InputError::new(format!("--highlight: no school `{id}` in the model")).into());
    }
    let step = progress.step("writing the table, figure and report");
    let files = psmeval_report::render_value_added(&va, a.highlight.as_deref())?;
    let mut outputs = Outputs::new();
    for p in [&a.pupils, &a.schools, &a.family_file].into_iter().flatten() {
        outputs.protect(p);
    }
    outputs.add_artifacts(&out, &files);
    outputs.add(out.join("results.json"), serde_json::to_string_pretty(&va)? + "\n");
    outputs.commit()?;
    step.finish();
    let [above, in_line, below] = va.counts;
    progress.message(&format!(
        "value-added of {} schools: {above} above, {in_line} in line, {below} below expectation; {} pupil groups \
         below expectation; wrote {}",
        va.schools.len(),
        va.groups.iter().filter(|g| g.flag == psmeval_evaluation::value_added::Flag::Below).count(),
        out.display()
    ));
    Ok(())
}
