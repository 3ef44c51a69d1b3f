# The two commands a new user needs (README): `make demo` and `make test`.
# Both install into .venv/ at the repo root and reuse it while pyproject.toml is unchanged.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Rules call `python -m babydistill...`: put the venv first on PATH for them.
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: demo test lint dry-run rulegraph paper-smoke

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

# Every run of config.yaml at full model size on the real partial corpus, tiny budgets, on
# CPU (workflow/paper_smoke.yaml; docs/scale.md). One job at a time within PAPER_SMOKE_MEM_MB;
# then the GPU-hour projection from its benchmark files.
PAPER_SMOKE_MEM_MB ?= 18000
paper-smoke: $(STAMP)
	$(RUN) $(BIN)/python benchmarks/paper_smoke.py config --out results/paper-smoke.yaml
	$(RUN) nice -n 10 $(BIN)/snakemake --configfile results/paper-smoke.yaml --cores 2 \
		--resources gpu=1 mem_mb=$(PAPER_SMOKE_MEM_MB) --rerun-incomplete --printshellcmds --keep-going
	$(RUN) $(BIN)/python benchmarks/paper_smoke.py project --smoke results/paper-smoke.yaml \
		--out results/paper-smoke/projection.md
