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

.PHONY: bootstrap home sample demo train test ui tensorboard bench bench-quality options lock clean golden

bootstrap: $(VENV)/.installed home

# One line per package while pip works (it is silent for minutes otherwise); pip's whole output
# stays in .venv/pip-install.log.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> creating the virtual environment $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the pinned dependencies (constraints.txt): a few minutes on a fresh machine"
	@$(BIN)/pip install --disable-pip-version-check --progress-bar off -c constraints.txt -e '.[dev]' 2>&1 \
	  | tee $(VENV)/pip-install.log | awk '/^Collecting /{print "  fetching " $$2; fflush()} \
	    /^Installing collected packages/{print "  unpacking " split($$0, p, ",") " packages into .venv (torch takes a minute or two)"; fflush()} \
	    /^(ERROR|error)/{print; fflush()}' || true
	@$(BIN)/python -c "import dagster, torch, torchvision, h5py, PIL, pandas, pyarrow, crc32c, tensorboard" \
	  || { echo "dependency install failed: see $(VENV)/pip-install.log" >&2; exit 1; }
	@echo "==> dependencies installed"
	@touch $@

# DAGSTER_HOME must be an absolute, existing folder holding dagster.yaml; it is git-ignored.
home: $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

sample: $(VENV)/.installed
	@echo "==> generating the sample datasets in $(SAMPLE_DIR)"
	@$(BIN)/python -m demo.sample_data --out $(SAMPLE_DIR)

# The demo shows INFO lines (steps, progress, training figures) with a short prefix; every event,
# DEBUG included, goes to outputs/demo.log. `dagster job execute` is the documented CLI: its
# "superseded" notice is silenced here.
DEMO_LOG := $(OUTPUT_DIR)/demo.log
DAGSTER_CLI := PYTHONWARNINGS='ignore:Function `job_execute_command` is superseded' $(BIN)/dagster
SHOW_INFO := grep --line-buffered -v -e ' - DEBUG - ' | sed -u -E \
	-e 's/^[0-9-]+ ([0-9:]+) [+0-9]+ - dagster - INFO - [^ ]+ - [0-9a-f-]{36} - /\1 /' \
	-e 's/^[0-9-]+ ([0-9:]+) [+0-9]+ - dagster - ([A-Z]+) - [^ ]+ - [0-9a-f-]{36} - /\1 \2 /'

demo: bootstrap sample
	@mkdir -p $(OUTPUT_DIR) && : > $(DEMO_LOG)
	@echo "==> prepare job: catalog, verify, resize, split and pack the four sample datasets (about 2 minutes; every event: $(DEMO_LOG))"
	@set -o pipefail; $(DAGSTER_CLI) job execute -m definitions -j prepare -c config/demo.yaml 2>&1 \
	  | tee -a $(DEMO_LOG) | $(SHOW_INFO)
	@echo "==> train job: the four demo models on what prepare packed (3 to 4 minutes on 2 cores)"
	@set -o pipefail; $(DAGSTER_CLI) job execute -m definitions -j train 2>&1 \
	  | tee -a $(DEMO_LOG) | $(SHOW_INFO)
	@echo "==> done"
	@$(BIN)/python -m demo.summary --outputs $(OUTPUT_DIR)

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

# Ours against cleanvision on a planted set (bench/quality.py); cleanvision lives in a venv of its
# own under .bench-venvs/, never in the runtime.
BENCH_VENVS := $(CURDIR)/.bench-venvs
bench-quality: bootstrap
	test -x $(BENCH_VENVS)/cleanvision/bin/python || $(PYTHON) -m venv $(BENCH_VENVS)/cleanvision
	$(BENCH_VENVS)/cleanvision/bin/pip install --quiet --disable-pip-version-check cleanvision==0.3.7
	CLEANVISION_PYTHON=$(BENCH_VENVS)/cleanvision/bin/python $(BIN)/python bench/quality.py

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

# Rewrite the README's option tables from the options models (ml/options.py).
options: bootstrap
	$(BIN)/python -m ml.options README.md

# Regenerate constraints.txt from the current environment after a deliberate upgrade.
lock:
	(echo "# Every transitive version, frozen from a working install (make lock regenerates it)."; \
	 $(BIN)/pip freeze --exclude-editable) > constraints.txt

clean:
	rm -rf $(OUTPUT_DIR) $(DAGSTER_HOME)
