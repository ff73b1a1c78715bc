# The R loop `psmeval power` replaces, timed per replicate (issue 12): for each simulated population,
# matchit 1:20 nearest-neighbour on the propensity score, KS2 maths standardized within year, the
# difference-in-differences lmer, and the CR2 test of the pooled effect (clubSandwich), as psmeval's default
# analysis does; plus the same lmer with a cohort term (1 | school_id:year), which R users would add.
#
#   Rscript benches/power/r_loop.R POPDIR OUT.json
#
# With R_LOOP_MODEL_ONLY=1 it times the model-based analysis alone, as psmeval's `[inference] method = "model"`
# does it: matchit, then lmerTest::lmer with the cohort term and the Satterthwaite test of the pooled
# contrast (lmerTest's contest1D), without clubSandwich; `model_based` = matchit + that. The same model by
# lme4::lmer alone (no df, so no interval) is timed beside it as `lmer_cohort`. Data preparation (the
# standardization and merge) is counted in `lmer_cohort`.
#
# POPDIR holds rep-1/, rep-2/, … each with schools.csv and pupils.csv (psmeval simulate --schools 3000
# --effect 0 --seed <r>); reading the CSVs is not timed (it stands in for R's simulation, which psmeval's
# replicate includes). Debian's MatchIt 4.5.1 has the nearest-neighbour defect of MatchIt issue #163: the
# matches may differ from 4.7's, its time does not.
model_only <- Sys.getenv("R_LOOP_MODEL_ONLY") == "1"
suppressPackageStartupMessages({
  library(MatchIt)
  library(lme4)
  if (model_only) library(lmerTest) else library(clubSandwich)
})
args <- commandArgs(trailingOnly = TRUE)
popdir <- args[1]
out <- args[2]
reps <- sort(list.dirs(popdir, recursive = FALSE))
rows <- list()
for (d in reps) {
  schools <- read.csv(file.path(d, "schools.csv"))
  pupils <- read.csv(file.path(d, "pupils.csv"))
  t0 <- proc.time()[["elapsed"]]
  m <- matchit(lead ~ pct_fsm + pct_eal + pct_sen + idaci + prior_attainment + urban + n_pupils + factor(ofsted),
               data = schools, method = "nearest", ratio = 20)
  md <- match.data(m)
  t1 <- proc.time()[["elapsed"]]
  ks2 <- pupils[pupils$key_stage == 2, ]
  ks2$maths_z <- ave(ks2$maths, ks2$year, FUN = function(v) (v - mean(v)) / sd(v))
  s <- merge(ks2, md[, c("school_id", "lead", "weights")], by = "school_id")
  s$year_f <- factor(s$year)
  if (model_only) {
    s$cohort <- interaction(s$school_id, s$year, drop = TRUE)
    fit0 <- lme4::lmer(maths_z ~ year_f * lead + female + fsm + eal + sen + prior + (1 | school_id) + (1 | cohort),
                       data = s, REML = TRUE)
    t1b <- proc.time()[["elapsed"]]
    fit <- lmerTest::lmer(maths_z ~ year_f * lead + female + fsm + eal + sen + prior + (1 | school_id) + (1 | cohort),
                          data = s, REML = TRUE)
    b <- names(fixef(fit))
    l <- setNames(rep(0, length(b)), b)
    l[paste0("year_f", c(2015, 2016, 2017), ":lead")] <- 1 / 3
    l["year_f2014:lead"] <- l["year_f2014:lead"] - 1 / 2
    ct <- contest1D(fit, l, ddf = "Satterthwaite")
    t2 <- proc.time()[["elapsed"]]
    rows[[length(rows) + 1]] <- list(
      replicate = basename(d), pupils = nrow(s), schools = length(unique(s$school_id)),
      matchit = t1 - t0, lmer_cohort = t1b - t1, lmertest_cohort = t2 - t1b, model_based = (t1 - t0) + (t2 - t1b),
      estimate = ct$Estimate, se = ct$`Std. Error`, df = ct$df
    )
    cat(sprintf("%s: matchit %.2f s, lme4 lmer with cohort term %.2f s, lmerTest with cohort term + Satterthwaite contrast %.2f s\n",
                basename(d), t1 - t0, t1b - t1, t2 - t1b))
    next
  }
  f <- maths_z ~ year_f * lead + female + fsm + eal + sen + prior + (1 | school_id)
  fit <- lmer(f, data = s, REML = TRUE)
  t2 <- proc.time()[["elapsed"]]
  # Pooled effect: mean of the post-programme interactions minus the mean of the pre-programme ones.
  b <- names(fixef(fit))
  l <- setNames(rep(0, length(b)), b)
  post <- paste0("year_f", c(2015, 2016, 2017), ":lead")
  pre <- paste0("year_f", 2014, ":lead")
  l[post] <- 1 / 3
  l[pre] <- l[pre] - 1 / 2   # the reference year 2013 has coefficient 0; mean over 2013 and 2014
  ct <- linear_contrast(fit, vcov = "CR2", cluster = s$school_id, contrasts = matrix(l, nrow = 1), test = "Satterthwaite")
  t3 <- proc.time()[["elapsed"]]
  s$cohort <- interaction(s$school_id, s$year, drop = TRUE)
  fit2 <- lmer(maths_z ~ year_f * lead + female + fsm + eal + sen + prior + (1 | school_id) + (1 | cohort),
               data = s, REML = TRUE)
  t4 <- proc.time()[["elapsed"]]
  rows[[length(rows) + 1]] <- list(
    replicate = basename(d), pupils = nrow(s), schools = length(unique(s$school_id)),
    matchit = t1 - t0, lmer = t2 - t1, cr2 = t3 - t2, lmer_cohort = t4 - t3,
    psmeval_equivalent = t3 - t0, with_cohort_term = (t3 - t0) + (t4 - t3) - (t2 - t1),
    estimate = ct$Est, se = ct$SE, df = ct$df
  )
  cat(sprintf("%s: matchit %.1f s, lmer %.1f s, CR2 %.1f s, lmer with cohort term %.1f s\n",
              basename(d), t1 - t0, t2 - t1, t3 - t2, t4 - t3))
}
json <- paste0("[\n", paste(vapply(rows, function(r) {
  paste0("  {", paste(sprintf("\"%s\": %s", names(r),
    vapply(r, function(v) if (is.character(v)) sprintf("\"%s\"", v) else format(v, digits = 10), "")), collapse = ", "), "}")
}, ""), collapse = ",\n"), "\n]\n")
writeLines(json, out, sep = "")
