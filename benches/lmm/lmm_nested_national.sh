#!/usr/bin/env bash
# Side-by-side timing of issue 10's national nested cohort LMM, psmeval against lme4, in one run: the national
# population of `psmeval simulate` (default seed; 2,998,582 KS2 pupils in 16,800 schools and 84,000
# school-years), the model
#   maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
# by `psmeval lmm` (whole process: reading the CSV, the model frame, the REML fit with Satterthwaite df;
# three runs) and by R (data.table::fread, then lmer with lme4's defaults; one run), on the same CSV.
#   bash benches/lmm/lmm_nested_national.sh [WORKDIR]   (default out/bench-nested-national; needs R with lme4
#                                                       and data.table)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-out/bench-nested-national}
source benches/lmm/national_ks2.sh
formula='maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)'
for run in 1 2 3; do
  /usr/bin/time -f "psmeval run $run: %e s wall (read + frame + fit), %M KB peak RSS" \
    $bin lmm --data "$work/national_ks2.csv" --formula "$formula" --json "$work/psmeval.json" 2>&1 \
    | grep -E "done in|wall"
done
grep -m1 '"log_likelihood"' "$work/psmeval.json"
/usr/bin/time -f "R: %e s wall, %M KB peak RSS" Rscript benches/lmm/lmm_nested_national.R fit \
  "$work/national_ks2.csv" "$work/lme4.json"
