# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python -m pip install --quiet -e ".[test]" 2> $(VENV)/pip.log || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "from repro.runtime import import_tensorflow; import_tensorflow(); import saliency, pydicom, pytest"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/repro all --experiment demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs build *.egg-info
