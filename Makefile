# The two commands a new user needs (README): `make demo` and `make test`.
# Both install into .venv/ at the repo root and reuse it while pyproject.toml is unchanged.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Rules call `python -m babydistill...`: put the venv first on PATH for them.
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: demo test lint dry-run rulegraph

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(RUN) $(BIN)/snakemake --profile workflow/profiles/demo

test: $(STAMP)
	$(RUN) $(BIN)/pytest

lint: $(STAMP)
	$(RUN) $(BIN)/snakemake --lint
	$(RUN) $(BIN)/snakemake --lint --configfile workflow/demo.yaml

dry-run: $(STAMP)
	$(RUN) $(BIN)/snakemake -n --cores 8 --resources gpu=1

rulegraph: $(STAMP)
	$(RUN) $(BIN)/snakemake --configfile workflow/demo.yaml --rulegraph | dot -Tsvg > docs/rulegraph.svg
