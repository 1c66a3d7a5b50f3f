#!/usr/bin/env bash
# The GPU figures in one device call (bench/gpu-notes.md keeps them), on a machine whose python3 has
# torch but not this project's other packages, which travel as wheels in .whl/ (see gpu-notes.md).
# LEARNED=captioners times only the captioners of bench/learned_gpu.py, whose other rows change less
# often. FSDP2 on every GPU of the machine next (a minute), training last, its compiled variants at
# the end (they compile for minutes, and the call's limit may cut the last).
# Each bench prints its lines as they land and tees them to $OUT, so a run cut short keeps them.
set -uo pipefail
out=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 bench/learned_gpu.py ${LEARNED:+--only $LEARNED} 2>&1 | grep --line-buffered -v "Writing model\|Loading weights" | tee "$out/learned.txt"
torchrun --standalone --nproc-per-node gpu bench/train.py --only fsdp 2>&1 | grep --line-buffered -v "view tensor\|_register_pre_backward_hook" | tee "$out/fsdp.txt"
python3 bench/train.py --only gpu 2>&1 | tee "$out/train.txt"
