# `make demo` and `make test` work on a fresh clone: each creates .venv when
# missing and installs the package (editable) with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Two workers, one test file each at a time (module fixtures stay per file):
# most of a test is single-threaded tracing, so the suite runs ~25% faster.
PYTEST_WORKERS ?= 2

.PHONY: venv install test demo clean

venv: $(STAMP)
install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m maskconver_tf.demo --output_dir demo_output

clean:
	rm -rf $(VENV) demo_output build dist *.egg-info
