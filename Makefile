# oltr — set-up, tests, demo and benchmarks. `make help` lists the targets.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
RUST_SRC := $(shell find rust -name '*.rs' 2>/dev/null) Cargo.toml pyproject.toml
STAMP := .build-stamp
FASHION_SRC := /usr/share/datasets/fashion-mnist

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Python dependencies once (no-op when they import) and Debian's Fashion-MNIST
	@$(PYTHON) -c "import torch, numpy, faiss, yaml, sklearn, matplotlib, hypothesis, pytest, pytest_timeout, maturin, tqdm, PIL, ruff, mypy; from importlib.metadata import version; version('types-PyYAML')" 2>/dev/null \
	  || $(PIP) install -q "torch>=2.0" "numpy>=1.23" "faiss-cpu>=1.7.4" pyyaml scikit-learn matplotlib \
	       pytest pytest-timeout hypothesis threadpoolctl tqdm pillow ruff mypy types-PyYAML "maturin>=1.5,<2"
	@# the source the embedded Fashion-MNIST-LT is rebuilt from (tests/test_datasets.py); root + apt only
	@test -d $(FASHION_SRC) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "note: $(FASHION_SRC) missing (apt-get install dataset-fashion-mnist); its test will skip"; }

# The extension is rebuilt only when a Rust source or the build config changed.
$(STAMP): $(RUST_SRC)
	rm -f python/oltr/_core*.so
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

.PHONY: install
install: deps $(STAMP) ## dependencies + the oltr package (editable, release build of the Rust core)

.PHONY: test
test: install test-rust test-python ## every test: cargo test, then pytest

.PHONY: test-rust
test-rust: ## Rust kernel unit tests
	cargo test --release --lib --quiet

.PHONY: test-python
test-python: install ## Python tests (warnings are errors; exit 5 "no tests" fails)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

.PHONY: demo
demo: install ## the main job: plain vs OLTR on the embedded Fashion-MNIST-LT, 3 seeds
	$(PYTHON) -m oltr demo --out demo_out

.PHONY: bench
bench: install ## memory-core benchmarks (criterion + Python peers); writes BENCHMARKS.md
	cargo bench --bench memory_core
	$(PYTHON) benches/bench_memory.py --write BENCHMARKS.md

.PHONY: lint
lint: install ## ruff, mypy, stubtest of the compiled oltr._core against its .pyi, rustfmt, clippy (-D warnings)
	$(PYTHON) -m ruff check python tests benches scripts
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest oltr._core
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
