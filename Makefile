# clipminer: two commands for a fresh Debian machine.
#   make demo   set everything up, then run the pipeline on generated data
#   make test   set everything up, then run the offline test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-out
# Debian packages: chromium and its driver for scraping, ffmpeg for fetch-videos' time ranges
# and the decode benchmark's reference, python3-venv for the venv, libgl1 for OpenCV (which
# PySceneDetect, the shot detector, brings).
APT_PACKAGES ?= chromium chromium-driver ffmpeg python3-venv libgl1

.PHONY: setup system-deps demo test test-all lint docs bench clean

setup: $(VENV)/.installed

# apt only where we are root on Debian and something is missing; otherwise say what to install.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "apt-get install:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "note: please install these Debian packages:$$missing (continuing without them)"; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,scrape,videos,ray,s3,curate,background,int8]"
	touch $@

demo: setup
	$(VENV)/bin/clipminer demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

docs: setup  # the command reference from --help, then the site under site/ (offline)
	$(PY) -m clipminer.cli.reference docs/reference.md
	$(VENV)/bin/mkdocs build --strict

lint: setup
	$(VENV)/bin/ruff check clipminer scrapers jobs tests benchmarks
	$(VENV)/bin/ruff format --check clipminer scrapers jobs tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/train_image.py
	$(PY) benchmarks/train_video.py
	$(PY) benchmarks/findclips.py
	$(PY) benchmarks/findclips_quality.py
	$(PY) benchmarks/scrape.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/shots.py
	$(PY) benchmarks/dedup.py
	$(PY) benchmarks/cut_settings.py
	$(PY) benchmarks/open_set.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
