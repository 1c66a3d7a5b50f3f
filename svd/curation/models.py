"""What the learned models of curation share (the CLIP scorers, TransNetV2): where they run, on one
thread, and a count of how often each was built, to show a worker builds it once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

# Models built in this process, by name: a worker builds each once, never once per video.
LOADS: Counter[str] = Counter()

Device = Literal["cpu", "auto", "cuda"]  # where a learned model runs; auto: CUDA when present


def torch_device(device: Device) -> str:
    """The torch device for a `device` param; asking for CUDA where torch sees none fails."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda, but torch sees no CUDA device here (auto falls back to cpu)")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a model call, as every scorer runs: parallelism comes from the
    runner's workers, and N workers x M threads on a few cores spin. Put back after, so a process
    that also trains (a test session, `svd curate` then training) keeps its threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
