# Every target bootstraps what it needs (uv, .venv, protos) through scripts/bootstrap.sh.
SHELL := /bin/bash
PY := .venv/bin/python
BOOT := ./scripts/bootstrap.sh
# Busy-waiting OpenMP threads starve each other on small shared machines (10x slower on 2 cores).
export OMP_WAIT_POLICY ?= PASSIVE
# Where bootstrap's `pip install --user uv` puts uv: the tests that build venvs call it too.
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: install protos check-protos test test-fast up down demo bench train \
        train-judge train-captioning train-audio train-text2image train-pix2pix train-cyclegan train-embedding \
        compose-config clean bench-peers explain-measure

install:
	$(BOOT)

protos: install
	$(PY) -m scripts.gen_protos --write

check-protos: install
	$(PY) -m scripts.gen_protos --check

# The README's test command. Runs everything: unit, service, quality and end-to-end tests.
test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The local stack: every service plus the gateway as processes, same settings as compose.yaml.
up: install
	$(PY) -m scripts.stack up

down:
	@[ -x $(PY) ] && $(PY) -m scripts.stack down || true

# The README's main command: the stack on built-in checkpoints plus a chained demo.
demo: install
	$(PY) -m scripts.stack demo

# Service benchmarks, then the peer comparison (Triton, TorchServe, Ray Serve in their own uv environments).
bench: install
	$(PY) -m tests.benchmarks --out BENCHMARKS.md
	$(PY) -m tests.benchmarks.peers --out BENCHMARKS.md
	$(PY) -m tests.benchmarks.peers --out BENCHMARKS.md --split

# Synesthesia against Triton (PyTriton), TorchServe and Ray Serve on the same models in one alternating run,
# then again with the servers and the load generator on separate CPUs (--split); their environments are built under $${SYN_PEERS_DIR:-~/.cache/synesthesia/peers}, never in .venv.
bench-peers: install
	$(PY) -m tests.benchmarks.peers --out BENCHMARKS.md
	$(PY) -m tests.benchmarks.peers --out BENCHMARKS.md --split

# Measure the explanation methods (pointing game, deletion/insertion, sanity check) on held-out scenes and
# rewrite their tables and pictures in docs/explanations.md (CPU, about 30 min on 2 cores for the default).
EXPLAIN_MODELS ?= embedding,localization
EXPLAIN_SCENES ?= 100
explain-measure: install
	$(PY) -m models.explain.evaluate --models $(EXPLAIN_MODELS) --scenes $(EXPLAIN_SCENES) --sanity-scenes 5 \
		--pictures docs/explanations --docs docs/explanations.md

# Re-train the built-in checkpoints on ShapesWorld (each fits in about 20 minutes on 2 CPU cores).
train: train-judge train-captioning train-audio train-text2image train-pix2pix train-cyclegan train-embedding

train-judge: install
	$(PY) -m models.judge.train

train-captioning: install
	$(PY) -m models.captioning.train

train-audio: install
	$(PY) -m models.audio.train

train-text2image: install
	$(PY) -m models.generation.train_text2image

train-pix2pix: install
	$(PY) -m models.generation.train_pix2pix

train-cyclegan: install
	$(PY) -m models.generation.train_cyclegan

train-embedding: install
	$(PY) -m models.embedding.train

clean:
	rm -rf .venv .pytest_cache out run
