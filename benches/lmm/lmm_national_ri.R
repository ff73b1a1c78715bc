# Issue 16's national random-intercept LMM in R, for benches/lmm/lmm_national_ri.sh:
#   Rscript lmm_national_ri.R DATA.csv   data.table::fread + lmer (lme4's defaults, REML), each timed
# Model: maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)
suppressPackageStartupMessages({
  library(lme4)
  library(data.table)
})
args <- commandArgs(trailingOnly = TRUE)
t_read <- system.time(d <- fread(args[1]))[["elapsed"]]
f <- maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id)
t_fit <- system.time(m <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
cat(sprintf("R: rows %d, read %.2f s, fit %.2f s, read + fit %.2f s, logLik %.7f (lme4 %s)\n", nrow(d), t_read, t_fit,
            t_read + t_fit, as.numeric(logLik(m)), as.character(packageVersion("lme4"))))
