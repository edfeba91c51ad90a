# Writes the lme4 reference fixtures of the conformance suite (issue 11).
#
# Requirements (Debian packages; R is not a dependency of lmmformula):
#   apt-get install -y r-base-core r-cran-lme4 r-cran-jsonlite
# (splines ships with r-base-core.)
#
# Run by hand from the repository root:
#   Rscript tests/conformance/make_fixtures.R                    # every formula
#   Rscript tests/conformance/make_fixtures.R c001 h003          # only these ids
#   Rscript tests/conformance/make_fixtures.R --regenerate-data  # also rewrite data/sim_*.csv
#
# Reads tests/conformance/corpus.tsv and holdout.tsv (columns id, data, formula, family, note),
# writes the simulated data sets tests/conformance/data/sim_<name>.csv (only when absent, or
# with --regenerate-data, so reruns are stable), runs lme4's lFormula() (gaussian) or
# glFormula(family = binomial) on each formula, and writes tests/conformance/fixtures/<id>.json.
# The JSON fields are described in tests/conformance/README.md. A formula fails when lme4
# raises an error, a warning or a message (e.g. rank-deficiency column dropping); the script
# prints one line per formula and exits non-zero if any formula failed.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(splines) # bs() in formulas, as an R user would have it attached
})

# Factor levels are sorted by code point (as Python sorts strings), whatever the user's locale.
invisible(Sys.setlocale("LC_COLLATE", "C"))

root <- file.path("tests", "conformance")
if (!dir.exists(root)) stop("run from the repository root: Rscript tests/conformance/make_fixtures.R")
data_dir <- file.path(root, "data")
fixture_dir <- file.path(root, "fixtures")
dir.create(data_dir, showWarnings = FALSE)
dir.create(fixture_dir, showWarnings = FALSE)

args <- commandArgs(trailingOnly = TRUE)
regenerate <- "--regenerate-data" %in% args
only <- setdiff(args, "--regenerate-data")

# ---------------------------------------------------------------------------------------------
# Simulated and derived data sets
# ---------------------------------------------------------------------------------------------

make_sim_main <- function() {
  set.seed(20261127)
  n <- 180
  g <- rep(sprintf("g%02d", 1:12), each = 15) # 12 levels
  g2 <- sample(rep(paste0("r", 1:8), length.out = n)) # 8 levels, crossed with g
  a <- sample(rep(paste0("site", LETTERS[1:6]), length.out = n)) # 6 levels
  b <- sample(rep(c("b1", "b2", "b3"), length.out = n)) # labels repeat within a (as pastes' cask)
  f <- sample(c("ctl", "trtA", "trtB"), n, replace = TRUE)
  h <- sample(c("no", "yes"), n, replace = TRUE)
  k <- sample(c("north", "south", "east", "west"), n, replace = TRUE)
  d <- sample(1:4, n, replace = TRUE) # integer code, used as factor(d)
  x <- round(rnorm(n), 3) # mean 0
  z <- round(rnorm(n, 2, 1.5), 3) # nonzero mean
  w <- round(runif(n, 0.5, 3), 3) # positive, for log(w) and offset(log(w))
  gi <- match(g, sort(unique(g)))
  g2i <- match(g2, sort(unique(g2)))
  u0 <- rnorm(12, 0, 0.8)
  u1 <- rnorm(12, 0, 0.4)
  v0 <- rnorm(8, 0, 0.5)
  fe <- c(ctl = 0, trtA = 0.5, trtB = -0.4)[f]
  eta <- 1 + 0.5 * x - 0.3 * z + 0.2 * w + fe + 0.3 * (h == "yes") + u0[gi] + u1[gi] * x + v0[g2i]
  y <- round(eta + rnorm(n, 0, 0.7), 3)
  ypos <- round(exp(0.3 * y), 4) # positive, for log(ypos)
  trials <- sample(5:20, n, replace = TRUE)
  p <- plogis(-0.5 + 0.6 * x + 0.5 * u0[gi] + 0.4 * (f == "trtA"))
  s <- rbinom(n, trials, p)
  yb <- rbinom(n, 1, p)
  data.frame(
    y = y, ypos = ypos, yb = yb, s = s, n = trials, fails = trials - s,
    x = x, z = z, w = w, d = d, f = f, h = h, k = k, g = g, g2 = g2, a = a, b = b,
    stringsAsFactors = FALSE
  )
}

make_sim_small <- function() {
  set.seed(11)
  n <- 100
  id <- rep(1:10, each = 10) # integer grouping column
  g <- sample(rep(paste0("g", 1:10), length.out = n)) # labels g1..g10: sorted as strings
  x <- round(rnorm(n, 1, 1), 3)
  z <- round(runif(n, -2, 2), 3)
  u <- rnorm(10, 0, 1)
  y <- round(2 + 0.7 * x - 0.5 * z + u[id] + 0.3 * u[id] * x + rnorm(n, 0, 0.5), 3)
  data.frame(y = y, x = x, z = z, id = id, g = g, stringsAsFactors = FALSE)
}

make_sim_na <- function(main) {
  # Derived from sim_main: a few missing values in y, x and f (z, w, g complete).
  d <- main[, c("y", "x", "z", "w", "f", "g")]
  d$x[c(3, 17, 40, 88, 150)] <- NA
  d$f[c(5, 60, 121)] <- NA
  d$y[c(10, 77, 99, 160)] <- NA
  d
}

make_sim_ozone <- function() {
  # The first 20 rows (by date) of each station of the shipped Beijing ozone data.
  oz <- read.csv(file.path("data", "beijing_ozone.csv"), stringsAsFactors = FALSE, check.names = FALSE)
  oz <- oz[order(oz$station, oz$date), ]
  keep <- unlist(lapply(split(seq_len(nrow(oz)), oz$station), function(i) i[seq_len(min(20, length(i)))]))
  oz <- oz[sort(keep), ]
  rownames(oz) <- NULL
  oz
}

write_sim <- function(name, maker) {
  path <- file.path(data_dir, paste0(name, ".csv"))
  if (regenerate || !file.exists(path)) {
    write.csv(maker(), path, row.names = FALSE)
    cat(sprintf("wrote %s\n", path))
  }
}

write_sim("sim_main", make_sim_main)
write_sim("sim_small", make_sim_small)
write_sim("sim_na", function() make_sim_na(read.csv(file.path(data_dir, "sim_main.csv"), stringsAsFactors = FALSE)))
write_sim("sim_ozone", make_sim_ozone)

# ---------------------------------------------------------------------------------------------
# Reading data as an R user (and lmmformula.load_dataset) does
# ---------------------------------------------------------------------------------------------

# Shipped columns whose labels look like numbers are text, as lmmformula.load_dataset reads
# them (and as they are factors in lme4's own data sets); read.csv would make them integers.
shipped_text <- list(
  sleepstudy = c(Subject = "character"),
  cbpp = c(herd = "character", period = "character"),
  pastes = c(batch = "character", cask = "character", sample = "character"),
  penicillin = c(plate = "character", sample = "character"),
  nwo_grants = c(discipline = "character", gender = "character")
)

data_cache <- new.env()
read_data <- function(name) {
  if (!is.null(data_cache[[name]])) return(data_cache[[name]])
  if (startsWith(name, "sim_")) {
    d <- read.csv(file.path(data_dir, paste0(name, ".csv")), stringsAsFactors = FALSE, check.names = FALSE)
  } else if (name %in% names(shipped_text)) {
    d <- read.csv(file.path("data", paste0(name, ".csv")), stringsAsFactors = FALSE,
                  colClasses = shipped_text[[name]])
  } else {
    stop("unknown data set: ", name)
  }
  # Character columns become factors with sorted levels (factor()), which is what lme4's model
  # frame does to them anyway (checked: every fixture that builds from the character columns is
  # byte-identical either way); done up front because C(f, contr.sum) refuses a character vector.
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
  data_cache[[name]] <- d
  d
}

# ---------------------------------------------------------------------------------------------
# One formula -> one fixture
# ---------------------------------------------------------------------------------------------

ignore <- "ignore"
lctrl <- lmerControl(check.nobs.vs.nlev = ignore, check.nobs.vs.nRE = ignore, check.nobs.vs.rankZ = ignore)
gctrl <- glmerControl(check.nobs.vs.nlev = ignore, check.nobs.vs.nRE = ignore, check.nobs.vs.rankZ = ignore)

run_lme4 <- function(formula, data, family) {
  conditions <- character()
  fml <- as.formula(formula, env = globalenv())
  out <- withCallingHandlers(
    if (family == "gaussian") {
      lFormula(fml, data = data, control = lctrl)
    } else if (family == "binomial") {
      glFormula(fml, data = data, family = binomial, control = gctrl)
    } else {
      stop("unknown family: ", family)
    },
    warning = function(w) {
      conditions <<- c(conditions, paste("warning:", conditionMessage(w)))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      conditions <<- c(conditions, paste("message:", trimws(conditionMessage(m))))
      invokeRestart("muffleMessage")
    }
  )
  if (length(conditions)) stop(paste(conditions, collapse = "; "))
  out
}

plain_matrix <- function(m) {
  m <- as.matrix(m)
  matrix(as.numeric(m), nrow = nrow(m), ncol = ncol(m))
}

build_fixture <- function(row) {
  data <- read_data(row$data)
  lf <- run_lme4(row$formula, data, row$family)
  fr <- lf$fr
  re <- lf$reTrms

  rows <- as.integer(rownames(fr)) - 1L
  stopifnot(!anyNA(rows), all(rows >= 0L), all(rows < nrow(data)))

  X <- lf$X
  stopifnot(nrow(X) == length(rows))

  Z <- drop0(t(re$Zt))
  Zt <- as(Z, "TsparseMatrix")
  ord <- order(Zt@j, Zt@i)
  q <- ncol(Z)

  cnms <- re$cnms
  flist <- re$flist
  asgn <- attr(flist, "assign")
  Gp <- re$Gp
  stopifnot(length(Gp) == length(cnms) + 1L, length(asgn) == length(cnms))
  blocks <- vector("list", length(cnms))
  zcols <- list()
  for (b in seq_along(cnms)) {
    fname <- names(flist)[asgn[b]]
    stopifnot(identical(fname, names(cnms)[b]))
    lev <- levels(flist[[asgn[b]]])
    terms <- cnms[[b]]
    nc <- length(terms)
    stopifnot(Gp[b + 1L] - Gp[b] == nc * length(lev))
    blocks[[b]] <- list(
      factor = fname,
      factor_vars = I(sort(all.vars(str2lang(fname)))),
      terms = I(terms),
      nlevels = length(lev)
    )
    # lme4's column order within a block: level-major, the block's terms within each level.
    for (l in seq_along(lev)) {
      for (t in seq_len(nc)) {
        zcols[[length(zcols) + 1L]] <- list(factor = fname, level = lev[l], term = terms[t], block = b - 1L)
      }
    }
  }
  stopifnot(length(zcols) == q)

  # Self-check of the column labels against Z itself: a column's nonzero rows all belong to its
  # level, and an "(Intercept)" column is exactly that level's indicator.
  Zd <- as.matrix(Z)
  for (c in seq_len(q)) {
    zc <- zcols[[c]]
    gf <- flist[[zc$factor]]
    nz <- which(Zd[, c] != 0)
    stopifnot(all(as.character(gf[nz]) == zc$level))
    if (zc$term == "(Intercept)") stopifnot(all(Zd[, c] == as.numeric(as.character(gf) == zc$level)))
  }

  y <- model.response(fr)
  y <- if (is.matrix(y)) plain_matrix(y) else I(as.numeric(y))
  off <- model.offset(fr)
  off <- if (is.null(off)) NULL else I(as.numeric(off))

  list(
    id = row$id,
    data = row$data,
    formula = row$formula,
    family = row$family,
    lme4_version = as.character(packageVersion("lme4")),
    r_version = R.version.string,
    Matrix_version = as.character(packageVersion("Matrix")),
    rows = I(rows),
    X = list(columns = I(colnames(X)), values = plain_matrix(X)),
    Z = list(nrow = nrow(Z), ncol = q, i = I(Zt@i[ord]), j = I(Zt@j[ord]), x = I(Zt@x[ord])),
    Z_columns = zcols,
    blocks = blocks,
    y = y,
    offset = off
  )
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

read_corpus <- function(path) {
  d <- read.delim(path, stringsAsFactors = FALSE, quote = "", comment.char = "", colClasses = "character")
  stopifnot(identical(names(d), c("id", "data", "formula", "family", "note")))
  d
}
corpus <- rbind(read_corpus(file.path(root, "corpus.tsv")), read_corpus(file.path(root, "holdout.tsv")))
if (anyDuplicated(corpus$id)) stop("duplicated ids: ", paste(corpus$id[duplicated(corpus$id)], collapse = ", "))
if (length(only)) {
  unknown <- setdiff(only, corpus$id)
  if (length(unknown)) stop("unknown ids: ", paste(unknown, collapse = ", "))
  corpus <- corpus[corpus$id %in% only, ]
}

failed <- character()
for (r in seq_len(nrow(corpus))) {
  row <- as.list(corpus[r, ])
  fx <- tryCatch(build_fixture(row), error = function(e) e)
  if (inherits(fx, "error")) {
    failed <- c(failed, row$id)
    cat(sprintf("FAIL %-5s %-11s %s ~~ %s\n", row$id, row$data, row$formula, conditionMessage(fx)))
    next
  }
  json <- toJSON(fx, auto_unbox = TRUE, digits = NA, null = "null", na = "null", matrix = "rowmajor")
  writeLines(json, file.path(fixture_dir, paste0(row$id, ".json")), useBytes = TRUE)
  cat(sprintf("ok   %-5s %-11s n=%-3d p=%-2d q=%-3d blocks=%d  %s\n", row$id, row$data,
              length(fx$rows), length(fx$X$columns), fx$Z$ncol, length(fx$blocks), row$formula))
}
cat(sprintf("%d formulas: %d ok, %d failed%s\n", nrow(corpus), nrow(corpus) - length(failed),
            length(failed), if (length(failed)) paste0(" (", paste(failed, collapse = ", "), ")") else ""))
if (length(failed)) quit(status = 1)
