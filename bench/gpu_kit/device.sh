#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, with .gpu-kit carried:
# installs the carried wheels to a scratch folder, then the kit under a deadline that
# ends this whole command within 9 minutes (KIT_SECONDS after it started, default 525).
# Every stage writes its JSON to $OUT as it ends; the log goes there too.
set -u
started=$(date +%s)
: "${OUT:?OUT must name the folder whose files come back}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu-kit/wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv,noheader
python3 -m bench.gpu_kit.run --out "$OUT" --work /tmp/gpu-kit \
    --ends-at $((started + ${KIT_SECONDS:-525})) "$@" 2>&1 | tee "$OUT/run.log"
python3 -m bench.gpu_kit.report "$OUT"
