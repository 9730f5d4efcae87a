#!/usr/bin/env bash
# The project's GPU check: bash benchmarks/gpu_check.sh OUT          (a CUDA machine, at most ~8 minutes)
#                          bash benchmarks/gpu_check.sh --cpu-dry-run OUT   (the same script on CPU, tiny sizes)
#
# The lent GPU machine has torch and transformers but no network: everything else rlreason imports is
# carried in `.gpu_deps/` (`make gpu-deps` builds it here with pip --target, about 10 MB; pass it to the
# device tool's `carry`). Where .venv exists (a developer's machine, CI) the script uses it instead.
# Results: OUT/gpu_check.json and OUT/gpu_check.md; commit the real run's as benchmarks/gpu_check.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python   # a developer's machine: the project's venv has it all
else PY=python3; fi                                    # the GPU machine: its python, plus what .gpu_deps carries
if [ "$PY" != .venv/bin/python ] && [ -d .gpu_deps ]; then
  export PYTHONPATH="$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" benchmarks/gpu_check.py "$@"
