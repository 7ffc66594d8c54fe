# Entry points (see README): `make demo` runs the main job, `make test` runs the tests, `make notebooks`
# runs the walk-through notebooks (executed copies in runs/notebooks/). Each creates .venv when it is
# missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TESTDEPS := .testdeps
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test notebooks report-screenshot install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python -m pip install --quiet -e ".[test]" 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "from repro.runtime import import_tensorflow; import_tensorflow(); import saliency, pydicom, pytest"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/repro all --experiment demo

# Quantus 0.6.0, the sanity checks' reference (tests/test_sanity.py), without its dependencies: its
# TensorFlow extra pins keras<3; the kit's environment has the ones it uses. Skipped, with a reason,
# where it cannot be installed.
$(TESTDEPS)/.installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --retries 0 --timeout 15 --target $(TESTDEPS) --no-deps quantus==0.6.0 \
		cachetools==8.0.3 2> $(VENV)/testdeps.log && touch $@ \
		|| echo "Quantus could not be installed ($(VENV)/testdeps.log): its comparisons in tests/test_sanity.py will be skipped"

test: $(STAMP) $(TESTDEPS)/.installed
	$(BIN)/python -m pytest -q

notebooks: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[notebooks]" 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python notebooks/run.py

# The overview of the published report, for the docs (needs Chromium: Debian's chromium package).
report-screenshot: $(STAMP)
	$(BIN)/python -m repro.report.browser figures/report/index.html --screenshot docs/report-overview.png

clean:
	rm -rf runs build *.egg-info $(TESTDEPS)
