# R side of the analyst benchmark (benches/analyst/run.sh): the same three jobs as `psmeval families`,
# `psmeval value-added --groups ... --by region` and `psmeval gaps`, done the way an analyst would in R, on
# the national synthetic population's CSV files, timed step by step (read, compute).
#   Rscript analyst_bench.R SCHOOLS.csv PUPILS.csv OUT.json
# Needs data.table, FNN, lme4, clubSandwich (Debian: r-cran-data.table r-cran-fnn r-cran-lme4
# r-cran-clubsandwich).
suppressMessages({ library(data.table); library(FNN); library(lme4); library(clubSandwich); library(jsonlite) })
args <- commandArgs(TRUE)
tm <- function(expr) unname(system.time(expr)["elapsed"])
t_read <- tm({ s <- fread(args[1]); p <- fread(args[2]) })
# Families: k = 20 nearest on the Mahalanobis metric (whitened by the Cholesky factor of the covariance).
vars <- c("pct_fsm", "pct_eal", "pct_sen", "idaci", "prior_attainment")
t_fam <- tm({
  X <- as.matrix(s[, ..vars])
  Z <- scale(X, scale = FALSE) %*% solve(chol(cov(X)))
  nn <- get.knn(Z, k = 20)
})
# Value-added: KS2 maths in the last year, school conditional modes with conditional SDs, and the mean
# residual of each pupil group, nationally and by region, with CR1 SEs clustered by school.
t_va <- tm({
  d <- p[key_stage == 2 & year == max(year)]
  d <- merge(d, s[, .(school_id, region)], by = "school_id")
  fit <- lmer(maths ~ prior + fsm + eal + sen + female + (1 | school_id), data = d, REML = TRUE)
  re <- ranef(fit, condVar = TRUE)
  d$r <- d$maths - as.vector(model.matrix(fit) %*% fixef(fit))
  cells <- list()
  for (g in c("fsm", "eal", "sen", "female")) {
    for (lv in unique(d[[g]])) for (reg in c(NA, unique(d$region))) {
      dd <- if (is.na(reg)) d[d[[g]] == lv] else d[d[[g]] == lv & region == reg]
      m <- lm(r ~ 1, data = dd)
      cells[[length(cells) + 1]] <- sqrt(vcovCR(m, cluster = dd$school_id, type = "CR1")[1, 1])
    }
  }
})
# Gaps: FSM gap in the expected standard by region, CR1S clustered by school.
t_gaps <- tm({
  gp <- lapply(unique(d$region), function(reg) {
    dd <- d[region == reg]
    m <- lm(expected ~ fsm, data = dd)
    c(coef(m)[2], sqrt(vcovCR(m, cluster = dd$school_id, type = "CR1S")[2, 2]))
  })
})
out <- list(read = t_read, families = t_fam, value_added = t_va, gaps = t_gaps,
            pupils_in_model = nrow(d), loglik = as.numeric(logLik(fit)), sigma = sigma(fit))
write_json(out, args[3], auto_unbox = TRUE, digits = NA, pretty = TRUE)
print(out)
