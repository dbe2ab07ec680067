# The two set-up commands of the README. Each installs what it needs into .venv on first use
# (dev/setup_env.sh; a second run installs nothing).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -q

BENCH_ARGS ?=

.PHONY: env demo demo-lazy test bench study
env:
	@bash dev/setup_env.sh

demo: env
	$(PY) tools/train_net.py --config-file configs/mask_rcnn_ada_r18_embedded_cpu.yaml

# the same demo from the LazyConfig (configs/lazy/), through tools/lazyconfig_train_net.py
demo-lazy: env
	$(PY) tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r18_embedded_cpu.py

test: env
	$(PY) -m pytest $(PYTEST_ARGS) tests

# benchmarks/run.py: latency per depth, overhead against stock Detectron2, switching cost,
# distillation iteration cost (about 8 minutes on 2 CPU cores)
bench: env
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# tools/study.py: recipes x 3 seeds on the embedded textures task (1800 iterations), all 16
# settings evaluated with trained and per-depth BN statistics, mean +- std, paired by seed;
# the defaults `stages` (the paper's student) and `sandwich` (adadet's default) take about
# 3 hours on 2 CPU cores; resumable: rerun to continue. STUDY_ARGS="--recipes ... --split test"
STUDY_ARGS ?=
study: env
	$(PY) tools/study.py $(STUDY_ARGS)
