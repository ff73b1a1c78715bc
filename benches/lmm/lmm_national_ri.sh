#!/usr/bin/env bash
# Side-by-side timing of issue 16's national random-intercept LMM, psmeval against lme4, in one run: the KS2
# rows of the national population of `psmeval simulate` (default seed; 2,998,582 pupils in 16,800 schools,
# the CSV that benches/lmm/lmm_nested_national.sh prepares), the model
#   maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)
# by R (data.table::fread, then lmer with lme4's defaults; one run) and then by `psmeval lmm` (whole process:
# reading the CSV, the model frame, the REML fit with Satterthwaite df and conditional modes; three runs).
#   bash benches/lmm/lmm_national_ri.sh [WORKDIR]   (default out/bench-nested-national; needs R with lme4 and
#                                                    data.table)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-out/bench-nested-national}
source benches/lmm/national_ks2.sh
/usr/bin/time -f "R process: %e s wall, %M KB peak RSS" Rscript benches/lmm/lmm_national_ri.R "$work/national_ks2.csv"
formula='maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)'
for run in 1 2 3; do
  /usr/bin/time -f "psmeval run $run: %e s wall (read + frame + fit), %M KB peak RSS" \
    $bin lmm -q --data "$work/national_ks2.csv" --formula "$formula" --json "$work/psmeval_ri.json" > /dev/null
done
grep -m1 '"log_likelihood"' "$work/psmeval_ri.json"
