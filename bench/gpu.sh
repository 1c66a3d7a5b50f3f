#!/usr/bin/env bash
# The GPU figures in one device call (bench/gpu-notes.md keeps them), on a machine whose python3 has
# torch but not this project's other packages, which travel as wheels in .whl/ (see gpu-notes.md).
# LEARNED=captioners times only the captioners of bench/learned_gpu.py, whose other rows change less
# often. Training comes next, its compiled variants last (they compile for minutes). FSDP2 last, on
# every GPU.
# Each bench prints its lines as they land and tees them to $OUT, so a run cut short keeps them.
set -uo pipefail
out=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 bench/learned_gpu.py ${LEARNED:+--only $LEARNED} 2>&1 | grep --line-buffered -v "Writing model\|Loading weights" | tee "$out/learned.txt"
python3 bench/train.py --only gpu 2>&1 | tee "$out/train.txt"
torchrun --standalone --nproc-per-node gpu bench/train.py --only fsdp 2>&1 | tee "$out/fsdp.txt"
