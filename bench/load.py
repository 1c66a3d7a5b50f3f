"""Issue 10, point 3: the platform under load on this machine, measured (a benchmark, not a test).

1. Curation of 1,000 synthetic videos through the Prefect fan-out (flows.annotate on two local
   worker processes, as `curate.workers: 2` runs it), then the shards and the table. Goal: the
   peak memory of the whole process tree (this process, the workers, Prefect's server) under 4 GiB.
2. Training streams: a tiny Stage II on those clips (LVD, every annotated one) reads each window
   from the shards as it needs it, so its memory does not grow with the subset. Measured: the
   subset's size decoded, as the loader decodes each window before resizing it to the stage's
   (tiny) resolution, against the training's peak memory. Goal: the subset at least 10x larger
   decoded than the memory training held.

Memory is the sum of the resident set sizes of this process and all its descendants, sampled every
0.2 s: a worker's peak counts even though the worker has exited by the end.

    python bench/load.py [--videos 1000] [--steps 150]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # flows/ is not installed; Prefect's worker processes inherit sys.path

from infra.stack import QUIET_ENV  # noqa: E402

GIB = 1 << 30
WIDTH, HEIGHT = 256, 144  # the corpus: ~19 s of 16:9 video each
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and every descendant now alive."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(proc.name)] = int(stat[1])
            rss[int(proc.name)] = int(stat[21]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [c for c, p in parents.items() if p == pid]
    return total


class Peak:
    """The highest tree_rss seen while the `with` block ran."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.bytes, self._stop = every, 0, threading.Event()

    def __enter__(self) -> Peak:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, tree_rss(os.getpid()))
            self._stop.wait(self.every)


def curate_load(tmp: Path, videos: int) -> tuple[dict[str, float], Path]:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.annotate import annotate_videos, task_runner
    from svd.curation.curate import write_outputs
    from svd.media.io import probe
    from svd.media.synth import make_corpus
    from svd.params import CurateParams, SynthParams

    t0 = time.perf_counter()
    synth = SynthParams(
        out=tmp / "raw", videos=videos, width=WIDTH, height=HEIGHT, segment_seconds=(3.5, 6.0)
    )
    corpus = make_corpus(synth, seed=0)
    made = time.perf_counter() - t0
    video_s = sum(probe(v).seconds for v in corpus.glob("*.mp4"))
    p = CurateParams(sources=(str(corpus),), out=str(tmp / "curated"), cache=str(tmp / "cache"), workers=2)
    server = SubprocessASGIServer()
    server.start()
    try:
        os.environ["PREFECT_API_URL"] = server.api_url  # the workers read it at import
        with temporary_settings({PREFECT_API_URL: server.api_url}), Peak() as peak:
            t0 = time.perf_counter()
            results = annotate_videos.with_options(task_runner=task_runner(p))(p)
            table = write_outputs(results, p)
            wall = time.perf_counter() - t0
    finally:
        server.stop()
        os.environ.pop("PREFECT_API_URL")
    ok = table[table["status"] == "ok"]
    figures = {
        "videos": float(videos),
        "video_s": video_s,
        "synth_s": made,
        "wall_s": wall,
        "clips": float(len(ok)),
        "failed": float((table["status"] == "failed").sum()),
        "peak_gib": peak.bytes / GIB,
    }
    return figures, Path(p.out)


def train_load(tmp: Path, curated: Path, steps: int) -> dict[str, float]:
    import pandas as pd
    import yaml

    from svd.curation.filter import make_subsets, write_subsets
    from svd.params import load, merge
    from svd.train.loop import train_stage
    from svd.train.record import Silent

    smoke = yaml.safe_load((ROOT / "tests" / "e2e" / "smoke.yaml").read_text())
    paths = {
        "curate": {"out": str(curated)},
        "filter": {"out": str(tmp / "subsets")},
        "train": {"image": {"out": str(tmp / "image")}, "video": {"out": str(tmp / "video"), "steps": steps}},
    }
    p = load(ROOT / "params.yaml", merge(smoke, paths))
    table = pd.read_parquet(curated / "clips.parquet")
    write_subsets(make_subsets(table, p.filter), p.filter.out)
    # Stage II on LVD, every annotated clip (the paper's unfiltered baseline), from fresh weights and
    # reading frames from the shards (no latent store)
    video = p.stage("video").model_copy(update={"subset": "lvd", "init": None, "latents": None})
    subset = pd.read_parquet(Path(p.filter.out) / "lvd.parquet")
    decoded = float((subset["frames"] * HEIGHT * WIDTH * 3).sum())  # uint8 RGB, as the loader decodes them
    p = p.model_copy(update={"train": p.train.model_copy(update={"video": video})})
    with Peak() as peak:
        t0 = time.perf_counter()
        train_stage(p, "video", p.filter.out, p.curate.out, Silent())
        wall = time.perf_counter() - t0
    return {
        "clips": float(len(subset)),
        "decoded_gib": decoded / GIB,
        "peak_gib": peak.bytes / GIB,
        "steps": float(steps),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    os.environ.update(
        QUIET_ENV | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    )
    with tempfile.TemporaryDirectory(prefix="svd-load-") as name:
        tmp = Path(name)
        os.environ["PREFECT_HOME"] = str(tmp / "prefect")
        c, curated = curate_load(tmp, args.videos)
        print(
            f"curation: {c['videos']:.0f} synthetic videos ({c['video_s']:.0f} video-s, made in"
            f" {c['synth_s']:.0f} s) on 2 workers: {c['wall_s']:.0f} s wall, {c['clips']:.0f} clips,"
            f" {c['failed']:.0f} failed rows"
        )
        verdict = "met" if c["peak_gib"] < 4 else "NOT met"
        print(f"  peak memory of the process tree {c['peak_gib']:.2f} GiB   goal < 4 GiB: {verdict}")
        t = train_load(tmp, curated, args.steps)
        ratio = t["decoded_gib"] / t["peak_gib"]
        print(
            f"training: tiny Stage II, {t['steps']:.0f} steps over LVD, {t['clips']:.0f} clips,"
            f" {t['wall_s']:.0f} s wall"
        )
        print(
            f"  subset decoded ({WIDTH}x{HEIGHT}) {t['decoded_gib']:.2f} GiB, peak memory"
            f" {t['peak_gib']:.2f} GiB: {ratio:.1f}x   goal >= 10x: {'met' if ratio >= 10 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
