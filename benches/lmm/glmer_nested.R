# glmer's time for the nested logistic model of issue 10 on a matched-sample-sized population, the R half of
# benches/lmm/glmer_nested.sh (which times psmeval on the same CSV in the same run).
# Usage: Rscript benches/lmm/glmer_nested.R KS2.csv OUT.json
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$school_id <- factor(d$school_id)
f <- expected ~ factor(year) + fsm + eal + sen + female + prior + (1 | school_id) + (1 | school_id:year)
t <- system.time(m <- glmer(f, data = d, family = binomial))[["elapsed"]]
msg <- m@optinfo$conv$lme4$messages
cat(sprintf("glmer: %.1f s, logLik %.7f%s\n", t, as.numeric(logLik(m)),
            if (is.null(msg)) "" else paste0(" (", paste(msg, collapse = "; "), ")")))
writeLines(sprintf('{"seconds": %.3f, "log_likelihood": %.15g, "theta": [%s], "beta": [%s], "se": [%s], "warning": "%s"}',
                   t, as.numeric(logLik(m)), paste(getME(m, "theta"), collapse = ", "),
                   paste(fixef(m), collapse = ", "), paste(sqrt(diag(as.matrix(vcov(m)))), collapse = ", "),
                   if (is.null(msg)) "" else gsub('"', "'", paste(msg, collapse = "; "))), args[2])
