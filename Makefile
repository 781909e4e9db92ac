# Two commands on a fresh machine: `make serve` (the app on the seed articles) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: install serve test ask index bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: its CPU wheel is local; any other version pulls gigabytes of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

index: $(STAMP)
	test -f index/CURRENT || $(BIN)/qa index

serve: index
	$(BIN)/qa serve

ask: index
	$(BIN)/qa ask "$(Q)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf index/CURRENT index/gen-* index/onnx index/write.lock
