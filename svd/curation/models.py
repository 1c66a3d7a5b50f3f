"""What the learned models of curation share (the CLIP scorers, TransNetV2): one thread each, and a
count of how often each was built, to show a worker builds it once. Where they run (Device,
torch_device) is a params matter: svd.curation.scorers.base."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

# Models built in this process, by name: a worker builds each once, never once per video.
LOADS: Counter[str] = Counter()


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
