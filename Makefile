# Entry points: `make demo` (sleep staging on synthetic PC18-format data) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= demo_data
DEMO_RUNS ?= demo_runs

.PHONY: install test demo demo-eeg-ssl demo-images bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Synthetic PC18 records -> preparation -> PART, PART-grid, MAE and supervised (same finetune
# budget) -> comparison table. Rerunning resumes / skips what is done.
demo: $(STAMP)
	$(BIN)/python -m part.modalities.eeg.sleep.demo --data $(DEMO_DATA) --runs $(DEMO_RUNS)

# The same with the EEG field's self-supervised baselines (relative positioning, temporal
# shuffling, CPC) beside PART in one table.
demo-eeg-ssl: $(STAMP)
	$(BIN)/python -m part.modalities.eeg.sleep.demo --data $(DEMO_DATA) --runs $(DEMO_RUNS) --eeg-baselines

# The image path on scikit-learn's digits (embedded data, ~3 min on 2 CPU cores).
demo-images: $(STAMP)
	$(BIN)/python -m part.train recipes/digits_demo.yaml

bench: $(STAMP)
	$(BIN)/python benchmarks/step_bench.py
	$(BIN)/python benchmarks/loader_bench.py --step
	$(BIN)/python benchmarks/prep_bench.py
	$(BIN)/python benchmarks/stage_bench.py
	$(BIN)/python benchmarks/startup_bench.py

clean:
	rm -rf $(VENV) runs $(DEMO_RUNS) $(DEMO_DATA)
