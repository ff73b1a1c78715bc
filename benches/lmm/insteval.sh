#!/usr/bin/env bash
# Side-by-side timing of InstEval's crossed model (issue 10) in one run:
#   y ~ service + (1 | s) + (1 | d) + (1 | dept:service)
# on lme4's InstEval (73,421 ratings; 2,972 students, 1,128 instructors, 28 department × service cells), the
# copy committed as crates/multilevel/tests/data/insteval.csv. R fits it with lme4::lmer (the estimates and
# SEs only) and with lmerTest::lmer + summary (adding the Satterthwaite df and p values that psmeval's
# summary prints), each once with the data already in memory; psmeval runs its whole process five times each
# way, alternating: with `--ddf lme4` (the work of lme4::lmer: estimates, SEs and t values, plus the
# conditional SDs lme4 leaves to `ranef`) and with its default Satterthwaite df (the work of lmerTest), both
# reading the CSV.
#   bash benches/lmm/insteval.sh      (needs R with lme4 and lmerTest)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p psmeval
bin=target/release/psmeval
data=crates/multilevel/tests/data/insteval.csv
formula='y ~ service + (1 | s) + (1 | d) + (1 | dept:service)'
Rscript benches/lmm/insteval.R "$data"
for run in 1 2 3 4 5; do
  /usr/bin/time -f "psmeval --ddf lme4, run $run: %e s wall (incl. CSV), %M KB peak RSS" \
    $bin lmm --data "$data" --formula "$formula" --ddf lme4 2>&1 | grep -E "fitting the model done|wall|^REML"
  /usr/bin/time -f "psmeval (Satterthwaite df), run $run: %e s wall (incl. CSV), %M KB peak RSS" \
    $bin lmm --data "$data" --formula "$formula" 2>&1 | grep -E "fitting the model done|wall|^REML"
done
