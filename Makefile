# One Makefile for every routine command. `make demo` and `make test` work from a fresh clone
# with only Python 3.11 and pip: they create .venv, install the pinned dependencies, set up
# DAGSTER_HOME inside the checkout, and then do their work.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
SAMPLE_DIR := $(CURDIR)/data/sample
OUTPUT_DIR := $(CURDIR)/outputs
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export DAGSTER_DISABLE_TELEMETRY := 1
export IMAGEDS_ROOT := $(CURDIR)

.PHONY: bootstrap home sample demo train test ui tensorboard bench lock clean golden

bootstrap: $(VENV)/.installed home

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(BIN)/python -c "import dagster, torch, torchvision, h5py, PIL, pandas, pyarrow, crc32c" \
	  || { echo "dependency install failed: see the pip output above" >&2; exit 1; }
	touch $@

# DAGSTER_HOME must be an absolute, existing folder holding dagster.yaml; it is git-ignored.
home: $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

sample: $(VENV)/.installed
	$(BIN)/python -m ml.sample_data --out $(SAMPLE_DIR)

demo: bootstrap sample
	$(BIN)/dagster job execute -m definitions -j prepare -c config/demo.yaml
	$(BIN)/dagster job execute -m definitions -j train
	$(BIN)/python -m ml.demo_summary --outputs $(OUTPUT_DIR)

# Train every dataset's model on what prepare packed (config/train.yaml; resumes from checkpoints).
train: bootstrap
	$(BIN)/dagster job execute -m definitions -j train

test: bootstrap
	$(BIN)/python -m pytest

ui: bootstrap
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# Every trainer's TensorBoard event files (outputs/<dataset>/train/<task>/tb/), one run per model.
tensorboard: bootstrap
	$(BIN)/tensorboard --logdir $(OUTPUT_DIR) --host 127.0.0.1 --port 6006

bench: bootstrap
	for b in resize verify pack loader stale_temps; do $(BIN)/python bench/$$b.py || exit 1; done

# Rewrite the golden reference files (tests/golden/) with the real tools, each in a venv of its
# own under .golden-venvs/ (never the runtime's): mxnet + insightface, TensorFlow, h5py + Pillow.
# Not part of `make test`: the tests read the committed files. GOLDEN_OUT=DIR writes elsewhere.
GOLDEN_VENVS := $(CURDIR)/.golden-venvs
GOLDEN_OUT ?= $(CURDIR)/tests/golden
golden:
	for env in mxnet tensorflow h5py; do \
	  test -x $(GOLDEN_VENVS)/$$env/bin/python || $(PYTHON) -m venv $(GOLDEN_VENVS)/$$env || exit 1; \
	  $(GOLDEN_VENVS)/$$env/bin/pip install --quiet --disable-pip-version-check \
	    -r tests/golden/requirements-$$env.txt 2>&1 | grep -v "is ignored: it is neither" || true; \
	done
	$(GOLDEN_VENVS)/mxnet/bin/pip install --quiet --disable-pip-version-check --no-deps insightface==2.1
	$(GOLDEN_VENVS)/mxnet/bin/python tests/golden/make_golden.py recordio $(GOLDEN_OUT)
	$(GOLDEN_VENVS)/tensorflow/bin/python tests/golden/make_golden.py tfrecord $(GOLDEN_OUT)
	for part in hdf5 bin inat images; do \
	  $(GOLDEN_VENVS)/h5py/bin/python tests/golden/make_golden.py $$part $(GOLDEN_OUT) || exit 1; \
	done

# Regenerate constraints.txt from the current environment after a deliberate upgrade.
lock:
	(echo "# Every transitive version, frozen from a working install (make lock regenerates it)."; \
	 $(BIN)/pip freeze --exclude-editable) > constraints.txt

clean:
	rm -rf $(OUTPUT_DIR) $(DAGSTER_HOME)
