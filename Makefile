# The two set-up commands of the README. Each installs what it needs into .venv on first use
# (dev/setup_env.sh; a second run installs nothing).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -q

.PHONY: env demo test
env:
	@bash dev/setup_env.sh

demo: env
	$(PY) tools/train_net.py --config-file configs/mask_rcnn_ada_r18_embedded_cpu.yaml

test: env
	$(PY) -m pytest $(PYTEST_ARGS) tests
