# Refit the kit's statistics in R, with the paper's own software: lme4 (REML), lmerTest, multcomp.
#
#   Rscript refit.R DIR
#
# DIR holds what `repro statistics --export-r DIR` wrote (or the test fixtures of tests/r/):
#   scores.csv     family, image, group, score: the data of each family the kit fitted
#   contrasts.csv  family, group, reference, constant_rule (+ the kit's estimate, std_error, z,
#                  p_value, verdict when exported from a run)
# and gets r_results.csv: each contrast as R computes it, with the fit's theta, sigma, singularity
# and REML criterion. When contrasts.csv carries the kit's P values, the largest difference and the
# verdicts that differ are printed.
#
# Each family: lmer(score ~ group + (1 | image), REML = TRUE). A pair of groups is one of multcomp's
# Tukey contrasts (glht(fit, mcp(group = "Tukey")), single-step). A numeric reference is a constant,
# compared by constant_rule:
#   studentized_range  (cell mean - constant) / se as z, adjusted with ptukey(|z| sqrt(2), k, Inf)
#   single_step        glht(fit0, linfct = K, rhs = constant): every group compared with the constant,
#                      single-step over that family (fit0: score ~ 0 + group + (1 | image))
#   constant_group     the constant entered as a group of its own (one row per image), Tukey pairs
# multcomp's single-step P is a multivariate normal integral; it is computed here with mvtnorm's
# GenzBretz at an absolute error of 1e-4 (multcomp's default is 1e-3).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(multcomp)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript refit.R DIR")
dir <- args[1]
precision <- GenzBretz(maxpts = 1e6, abseps = 1e-4, releps = 0)
set.seed(20210604)

scores <- read.csv(file.path(dir, "scores.csv"), colClasses = c("character", "character", "character", "numeric"))
wanted <- read.csv(file.path(dir, "contrasts.csv"), colClasses = "character")

single_step <- function(g) summary(g, test = adjusted("single-step", algorithm = precision))

fit_family <- function(data) {
  data$group <- factor(data$group, levels = sort(unique(data$group), method = "radix"))
  fit <- lmer(score ~ group + (1 | image), data = data, REML = TRUE)
  fit0 <- lmer(score ~ 0 + group + (1 | image), data = data, REML = TRUE)
  list(data = data, fit = fit, fit0 = fit0, tukey = single_step(glht(fit, linfct = mcp(group = "Tukey"))))
}

tukey_row <- function(model, group, reference) {
  test <- model$tukey$test
  names <- names(test$coefficients)
  forward <- paste(group, "-", reference)
  backward <- paste(reference, "-", group)
  sign <- if (forward %in% names) 1 else if (backward %in% names) -1 else stop("no contrast ", forward)
  i <- match(if (sign > 0) forward else backward, names)
  c(sign * test$coefficients[i], test$sigma[i], sign * test$tstat[i], test$pvalues[i])
}

rows <- list()
for (family in unique(wanted$family)) {
  data <- scores[scores$family == family, c("image", "group", "score")]
  mine <- wanted[wanted$family == family, ]
  rule <- mine$constant_rule[1]
  is_constant <- !(mine$reference %in% data$group)
  constants <- unique(mine$reference[is_constant])
  if (rule == "constant_group") {
    for (value in constants) {
      images <- unique(data$image)
      data <- rbind(data, data.frame(image = images, group = paste("constant", value), score = as.numeric(value)))
    }
  }
  started <- Sys.time()
  model <- tryCatch(fit_family(data), error = function(e) conditionMessage(e))
  if (is.character(model)) {   # lme4 cannot fit it (scores with no residual variance, say)
    rows[[length(rows) + 1]] <- data.frame(
      family = family, group = mine$group, reference = mine$reference, constant_rule = rule, estimate = NA,
      std_error = NA, z = NA, p_value = NA, theta = NA, sigma = NA, singular = NA, reml = NA,
      error = gsub("[\r\n]+", " ", model))
    message(sprintf("%s: lme4 cannot fit it: %s", family, model))
    next
  }
  fit0 <- model$fit0
  k <- nlevels(model$data$group)
  in_family <- unique(mine$group[is_constant])
  for (r in seq_len(nrow(mine))) {
    group <- mine$group[r]
    reference <- mine$reference[r]
    if (!is_constant[r]) {
      values <- tukey_row(model, group, reference)
    } else if (rule == "constant_group") {
      values <- tukey_row(model, group, paste("constant", reference))
    } else {
      coefficient <- paste0("group", group)
      estimate <- fixef(fit0)[[coefficient]] - as.numeric(reference)
      se <- sqrt(vcov(fit0)[coefficient, coefficient])
      z <- estimate / se
      if (rule == "studentized_range") {
        p <- ptukey(abs(z) * sqrt(2), nmeans = k, df = Inf, lower.tail = FALSE)
      } else {
        K <- matrix(0, nrow = length(in_family), ncol = length(fixef(fit0)),
                    dimnames = list(in_family, names(fixef(fit0))))
        for (g in in_family) K[g, paste0("group", g)] <- 1
        test <- single_step(glht(fit0, linfct = K, rhs = rep(as.numeric(reference), nrow(K))))$test
        p <- test$pvalues[match(group, in_family)]
      }
      values <- c(estimate, se, z, p)
    }
    rows[[length(rows) + 1]] <- data.frame(
      family = family, group = group, reference = reference, constant_rule = rule,
      estimate = values[1], std_error = values[2], z = values[3], p_value = values[4],
      theta = getME(model$fit, "theta")[[1]], sigma = sigma(model$fit),
      singular = isSingular(model$fit), reml = REMLcrit(model$fit), error = "")
  }
  message(sprintf("%s: %.1f s", family, as.numeric(Sys.time() - started, units = "secs")))
}
results <- do.call(rbind, rows)
write.csv(results, file.path(dir, "r_results.csv"), row.names = FALSE)
cat(sprintf("R %s, lme4 %s, lmerTest %s, multcomp %s, mvtnorm %s: %d contrasts in %d families -> %s\n",
            getRversion(), packageVersion("lme4"), packageVersion("lmerTest"), packageVersion("multcomp"),
            packageVersion("mvtnorm"), nrow(results), length(unique(results$family)),
            file.path(dir, "r_results.csv")))

if ("p_value" %in% names(wanted)) {
  kit <- as.numeric(wanted$p_value)
  differences <- abs(kit - results$p_value)
  alpha <- 0.05
  flips <- sum((kit < alpha) != (results$p_value < alpha), na.rm = TRUE)
  cat(sprintf("largest |P(kit) - P(R)|: %.2g; contrasts on different sides of alpha %.2f: %d; not fitted by lme4: %d\n",
              max(differences, na.rm = TRUE), alpha, flips, sum(is.na(results$p_value))))
}
