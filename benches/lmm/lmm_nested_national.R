# The national nested cohort LMM of issue 10 in R, for benches/lmm/lmm_nested_national.sh:
#   Rscript lmm_nested_national.R prepare SIMDIR OUT.csv   KS2 rows of `psmeval simulate`'s pupils.csv with maths
#                                                          standardized within year, lead and year_c (untimed)
#   Rscript lmm_nested_national.R fit DATA.csv OUT.json    data.table::fread + lmer, each timed
# Model: maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
suppressPackageStartupMessages({
  library(lme4)
  library(data.table)
})
args <- commandArgs(trailingOnly = TRUE)
if (args[1] == "prepare") {
  pupils <- fread(file.path(args[2], "pupils.csv"))
  schools <- fread(file.path(args[2], "schools.csv"))
  ks2 <- pupils[key_stage == 2]
  ks2[, maths_z := (maths - mean(maths)) / sd(maths), by = year]
  ks2[, lead := schools$lead[match(school_id, schools$school_id)]]
  ks2[, year_c := year - 2015]
  cols <- c("school_id", "year", "year_c", "lead", "female", "fsm", "eal", "sen", "prior", "maths_z", "expected")
  fwrite(ks2[, ..cols], args[3])
  quit(save = "no")
}
t_read <- system.time(d <- fread(args[2]))[["elapsed"]]
f <- maths_z ~ factor(year) * lead + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
t_fit <- system.time(m <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
conv <- gsub("[\n\"]", " ", m@optinfo$conv$lme4$messages)
out <- sprintf(paste0('{"rows": %d, "read_s": %.2f, "fit_s": %.2f, "logLik": %.7f, "theta": [%s], ',
                      '"warnings": "%s", "lme4": "%s"}'),
               nrow(d), t_read, t_fit, as.numeric(logLik(m)), paste(sprintf("%.9f", getME(m, "theta")), collapse = ", "),
               paste(conv, collapse = "; "), as.character(packageVersion("lme4")))
writeLines(out, args[3])
cat(out, "\n")
