# The R side of benches/lmm/insteval.sh: lme4::lmer, then lmerTest::lmer + summary, on InstEval's crossed
# model, timed with the data in memory (reading the CSV is not timed).
#   Rscript benches/lmm/insteval.R crates/multilevel/tests/data/insteval.csv
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})
path <- commandArgs(trailingOnly = TRUE)[1]
ie <- read.csv(path)
for (v in c("s", "d", "dept", "service")) ie[[v]] <- factor(ie[[v]])
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept:service)
t1 <- system.time(m1 <- lme4::lmer(f, data = ie, REML = TRUE))[["elapsed"]]
cat(sprintf("lme4::lmer: %.2f s (%d evaluations), REML criterion %.7f\n", t1, m1@optinfo$feval, REMLcrit(m1)))
t2 <- system.time({
  m2 <- lmerTest::lmer(f, data = ie, REML = TRUE)
  s <- summary(m2)
})[["elapsed"]]
cat(sprintf("lmerTest::lmer + summary: %.2f s\n", t2))
print(coef(s))
