"""Issue 5, acceptance point 10: what curation costs, measured in one run.

1. Throughput, in video-seconds per CPU-second on one core, of three ways through the same 13 videos
   (the 5 of ../shared/media and the default 8-video synthetic corpus):
   (a) the floor: PyAV decodes every frame once and converts nothing; no curation can beat it;
   (b) the naive chain: PySceneDetect's default `detect`, then per scene a Farneback pass and an OCR
       pass that each decode again; what a pipeline built from separate tools costs;
   (c) `svd.curation.curate.curate` with every scorer and an empty cache (a warm cache would measure
       cache hits). Goal: (c) at least 30% of the floor.
2. Cost per clip of each scorer's `score` on the same clips, frames already decoded, one thread:
   what each model adds. The learned ones run at the sizes the tests use: the text detector is the
   real one (it ships in its wheel), CLIP is a tiny random one (no download here). On a GPU machine
   bench/learned_gpu.py adds CLIP ViT-L/14 and TransNetV2 on CUDA, batched as curation runs them.
3. Wall time of the Prefect fan-out (flows/annotate.py) with 1 and 2 local worker processes, and
   whether both write the same bytes. Goal: at least 1.7x. The 13 videos above are no test of
   scaling: the 24-s 720p one alone outlasts the rest, so this part uses 24 synthetic videos of
   6-10 scenes (about 26 s each, 10 minutes in all) at 640x360 and 24 fps: short web videos, and
   enough annotation to stand above what every run costs whatever its size, ~2.5 s of Prefect
   (worker processes that import it, a flow run's start and end).

CPU time is this process's plus its children's, so it is right however many threads a library uses;
OpenCV and OpenMP are pinned to one thread anyway so that (a)-(c) compare like with like. The text
detector is loaded before anything is timed: its one-off load would otherwise land in whichever of
(b) and (c) runs first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # flows/ is not installed; Prefect's worker processes inherit sys.path

from svd.curation.scorers import SCORERS, text  # noqa: E402
from svd.curation.scorers.base import Frames, pick_frame  # noqa: E402
from svd.curation.scorers.motion import flow_magnitude  # noqa: E402
from svd.curation.scorers.text import text_area  # noqa: E402
from svd.media.io import iter_decoded, probe, read_at, read_frames  # noqa: E402
from svd.media.synth import make_corpus  # noqa: E402
from svd.params import CurateParams, SynthParams  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd
# pandas and svd.curation.curate (which imports it) are imported where they are used: Prefect's
# worker processes re-import this module, and a real worker imports neither (flows.annotate).

MEDIA = ROOT.parent / "shared" / "media"
# The scaling corpus: synthetic videos at a size real footage starts at (640x360, 24 fps) and as
# long as short web videos, so each costs annotation like a real one; at the default 128x96, 12 fps
# and 3-5 scenes a video is 0.15 s of work, and the ~2.5 s each run spends on Prefect (worker
# processes, the flow run's start and end) would be measured instead of the fan-out.
SCALING = {"videos": 24, "width": 640, "height": 360, "fps": 24, "segments": (6, 10)}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Prefect without a server to talk to: it starts its own, kept out of ~/.prefect and quiet.
PREFECT_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Scaling:
    wall_s: dict[int, float]  # workers -> flow call + write_outputs
    cpu_s: dict[int, float]  # workers -> CPU of this process and the workers (joined when the flow ends)
    span_s: dict[int, float | None]  # workers -> first task start to last task end (server's record)
    pids: dict[int, int]  # workers -> distinct worker processes that annotated
    tasks: dict[int, int]  # workers -> Prefect tasks the videos went out in
    differ: list[str]  # outputs whose bytes differ between 1 and 2 workers; empty: byte-identical
    files: int
    video_s: float
    load: float  # 1-min load average before: other jobs on the machine take cores from the workers
    edited: bool  # svd/ or flows/ changed on disk during the runs: each worker imports what it finds


@dataclass(frozen=True)
class Result:
    scorer_ms: dict[str, float]  # scorer setup -> CPU ms per clip
    scored_clips: int
    videos: int
    media: int  # of them from ../shared/media, the rest synthetic
    video_s: float
    cpu_s: dict[str, float]  # "a", "b", "c" -> CPU seconds
    scenes_b: int
    status_c: dict[str, int]
    scaling: Scaling


def cpu() -> float:
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def cpu_of(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = cpu()
    out = fn()
    return cpu() - t0, out


@contextmanager
def env(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the bench (its worker processes inherit them) and put the old ones back,
    so bench/run.py's later benchmarks run as they would alone."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def floor(videos: list[Path]) -> int:
    n = 0
    for v in videos:
        for _ in iter_decoded(v, threads=1):
            n += 1
    return n


def naive(videos: list[Path]) -> int:
    """Cut detection, motion and OCR as three tools, each decoding the video (or scene) itself."""
    # Imported here: Prefect's spawned workers re-import this module, and need no PySceneDetect.
    from scenedetect import ContentDetector, detect

    scenes = 0
    for v in videos:
        info = probe(v)
        found = [(a.seconds, b.seconds) for a, b in detect(str(v), ContentDetector())]
        spans = found or [(0.0, info.seconds)]  # no cut found: PySceneDetect's one scene, the whole video
        flow_size = Frames(short_side=16).size(info.width, info.height)
        text_size = Frames(long_side=320, upscale=False).size(info.width, info.height)  # as the text scorer
        for a, b in spans:
            frames = read_frames(v, fps=2, size=flow_size, start=a, end=b)
            if len(frames) >= 2:
                flow_magnitude(frames)
        for a, b in spans:
            picks = read_at(v, [a, (a + b) / 2, max(a, b - 1 / info.fps)], [text_size] * 3)
            max(text_area(f) for f in picks)
        scenes += len(spans)
    return scenes


def digest(out: Path) -> dict[str, str]:
    files = [out / "clips.parquet", *sorted((out / "shards").glob("*.tar"))]
    return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def differences(a: Path, b: Path) -> list[str]:
    """Files whose bytes differ; for the table, also which of its columns, to say where to look."""
    da, db = digest(a), digest(b)
    out = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    if "clips.parquet" in out:
        import pandas as pd

        ta, tb = pd.read_parquet(a / "clips.parquet"), pd.read_parquet(b / "clips.parquet")
        cols = (
            [c for c in ta.columns if c not in tb.columns or not ta[c].equals(tb[c])]
            if len(ta) == len(tb)
            else []
        )
        out[out.index("clips.parquet")] = (
            f"clips.parquet (columns {', '.join(cols) or 'all: row count differs'})"
        )
    return out


def source_digest() -> str:
    h = hashlib.sha256()
    for f in sorted([*(ROOT / "svd").rglob("*.py"), *(ROOT / "flows").rglob("*.py")]):
        h.update(f.read_bytes())
    return h.hexdigest()


def task_span(flow_run_id: Any, expected: int) -> float | None:
    """First task start to last task end as the server recorded them: the annotation alone, without
    the worker processes' start-up. The server writes task runs from events, so wait for them."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    only = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=only)
            spans = [(r.start_time, r.end_time) for r in runs if r.start_time and r.end_time]
            if len(spans) >= expected:
                return (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
            time.sleep(0.5)
    return None


def scorer_costs(table: pd.DataFrame, tmp: Path, clips: int = 24) -> tuple[dict[str, float], int]:
    """CPU ms per clip of each scorer setup's `score`, on the first `clips` ok clips of a curated
    table, their frames decoded beforehand as each scorer asks for them (so no decoding is timed)."""
    from svd.curation import scorers
    from svd.curation.scorers.base import ClipFrames
    from svd.curation.tiny_models import save_random_captioner, save_random_clip, save_random_llm

    model, head = save_random_clip(tmp / "tiny-clip")
    captioners = {
        "image": save_random_captioner(tmp / "tiny-git"),
        "video": save_random_captioner(tmp / "tiny-git-video", frames=6),
        "summary": save_random_llm(tmp / "tiny-llm"),
    }
    setups = {
        "motion": ("motion", {}),
        "text (PP-OCRv4 detector)": ("text", {}),
        "aesthetics (tiny CLIP + head)": ("aesthetics", {"model": model, "head": head}),
        "fingerprint (thumbnail)": ("fingerprint", {}),
        "fingerprint (tiny CLIP)": ("fingerprint", {"model": model}),
        "captioners (tiny GIT x2 + Llama)": ("captioners", captioners),
    }
    rows = table[table["status"] == "ok"].head(clips)
    out = {}
    for label, (name, raw) in setups.items():
        scorer = scorers.SCORERS[name](scorers.SCORERS[name].Params.model_validate(raw))
        spec = scorer.frames()
        inputs = []
        for r in rows.itertuples():
            size = spec.size(int(r.width), int(r.height))
            if spec.fps is not None:
                frames = list(read_frames(r.video, fps=spec.fps, size=size, start=r.start_s, end=r.end_s))
                rate = spec.fps
            else:
                at = [
                    r.start_s + (pick_frame(k, r.start_frame, r.end_frame) - r.start_frame) / r.fps
                    for k in spec.picks
                ]
                frames = read_at(r.video, at, [size] * len(spec.picks))
                rate = r.fps
            inputs.append(ClipFrames(frames, rate, int(r.width), int(r.height), str(r.caption)))
        scorer.score(inputs[0])  # a model's one-off load stays untimed
        t0 = time.process_time()
        for clip in inputs:
            scorer.score(clip)
        out[label] = (time.process_time() - t0) / len(inputs) * 1000
    return out, len(rows)


def warm_up() -> None:
    pass


def scaling(tmp: Path) -> Scaling:
    corpus = make_corpus(SynthParams.model_validate({"out": tmp / "scaling", **SCALING}), seed=0)
    video_s = sum(probe(v).seconds for v in corpus.glob("*.mp4"))
    with env(PREFECT_ENV | {"PREFECT_HOME": str(tmp / "prefect")}):
        os.environ.pop("PREFECT_API_URL", None)  # never a developer's live server
        from prefect import flow
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.annotate import annotate_videos, slots, task_runner, tasks, videos_per_task
        from svd.curation.curate import videos, write_outputs

        # One server for this process and its workers: a worker that finds no PREFECT_API_URL would
        # start its own temporary server, ~10 s inside the timed region.
        server = SubprocessASGIServer()
        server.start()
        try:
            url = server.api_url
            with env({"PREFECT_API_URL": url}), temporary_settings({PREFECT_API_URL: url}):
                flow(name="warm-up")(warm_up)()  # first-flow costs (client, registration) stay untimed
                load, code = os.getloadavg()[0], source_digest()
                wall, cpu_s, span, pids, count = {}, {}, {}, {}, {}
                for n in (1, 2):
                    p = CurateParams(
                        sources=(str(corpus),),
                        out=str(tmp / f"flow{n}"),
                        cache=str(tmp / f"cache{n}"),
                        workers=n,
                    )
                    t0, c0 = time.perf_counter(), cpu()
                    state = annotate_videos.with_options(task_runner=task_runner(p))(p, return_state=True)
                    results = state.result()
                    write_outputs(results, p)
                    wall[n], cpu_s[n] = time.perf_counter() - t0, cpu() - c0
                    found = videos(p)
                    count[n] = len(tasks(found, videos_per_task(p, len(found), slots(p))))
                    span[n] = task_span(state.state_details.flow_run_id, count[n])
                    pids[n] = len({r.worker for r in results})
        finally:
            server.stop()
    differ = differences(tmp / "flow1", tmp / "flow2")
    edited = source_digest() != code
    return Scaling(wall, cpu_s, span, pids, count, differ, len(digest(tmp / "flow1")), video_s, load, edited)


def main() -> Result:
    from svd.curation.curate import curate

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    with env(ONE_THREAD), tempfile.TemporaryDirectory(prefix="svd-bench-") as name:
        tmp = Path(name)
        media = Path(shutil.copytree(MEDIA, tmp / "media"))
        synth = make_corpus(SynthParams(out=tmp / "raw"), seed=0)
        videos = sorted(media.glob("*.mp4")) + sorted(synth.glob("*.mp4"))
        video_s = sum(probe(v).seconds for v in videos)
        text.detector()
        # 1. throughput, one process, one core
        cpu_a, _ = cpu_of(lambda: floor(videos))
        cpu_b, scenes = cpu_of(lambda: naive(videos))
        p = CurateParams(
            sources=(str(media), str(synth)),
            out=str(tmp / "out"),
            cache=str(tmp / "cache"),
            scorers={name: {} for name in SCORERS},
        )
        assert not Path(p.cache).exists(), "the cache must start empty, or (c) measures cache hits"
        cpu_c, df = cpu_of(lambda: curate(p))
        status = {str(k): int(v) for k, v in df["status"].value_counts().items()}
        scorer_ms, scored = scorer_costs(df, tmp)
        # 2. scaling of the fan-out
        scale = scaling(tmp)
        n_media = len(list(media.glob("*.mp4")))
    cv2.setNumThreads(threads)
    cpu_s = {"a": cpu_a, "b": cpu_b, "c": cpu_c}
    return Result(scorer_ms, scored, len(videos), n_media, video_s, cpu_s, scenes, status, scale)


def table(r: Result) -> str:
    rate = {k: r.video_s / v for k, v in r.cpu_s.items()}
    names = {
        "a": "(a) floor: PyAV decode, every frame",
        "b": "(b) naive: PySceneDetect + per-scene flow + OCR",
        "c": f"(c) svd curate ({'+'.join(SCORERS)}), empty cache",
    }
    of_floor = rate["c"] / rate["a"]
    lines = [
        f"throughput on one core: {r.videos} videos ({r.media} from shared/media, "
        f"{r.videos - r.media} synthetic), {r.video_s:.1f} video-s",
        f"  {'':66} {'CPU s':>7} {'video-s/CPU-s':>14} {'of floor':>9}",
        *(f"  {names[k]:66} {r.cpu_s[k]:7.2f} {rate[k]:14.1f} {rate[k] / rate['a']:9.0%}" for k in "abc"),
        f"  (c)/(a) {of_floor:.0%}   (b)/(a) {rate['b'] / rate['a']:.0%}"
        f"   (c)/(b) {rate['c'] / rate['b']:.2f}x"
        f"   goal (c) >= 30% of the floor: {'met' if of_floor >= 0.3 else 'NOT met'}",
        f"  (b) scored {r.scenes_b} scenes; (c) rows by status: {r.status_c}",
    ]
    lines += [
        f"cost per clip of each scorer's score(), {r.scored_clips} clips, frames decoded beforehand,"
        " one thread, tiny CLIP (the real sizes on a GPU: bench/learned_gpu.py, below):",
        *(f"  {label:40} {ms:8.2f} ms" for label, ms in r.scorer_ms.items()),
    ]
    s = r.scaling
    span = {n: f"{v:.2f}" if v is not None else "n/a" for n, v in s.span_s.items()}
    span_x = f"{s.span_s[1] / s.span_s[2]:.2f}x" if s.span_s[1] and s.span_s[2] else "n/a"
    wall_x = s.wall_s[1] / s.wall_s[2]
    same = "byte-identical" if not s.differ else "DIFFERENT: " + "; ".join(s.differ)
    lines += [
        f"fan-out scaling: flows.annotate.annotate_videos on ProcessPoolTaskRunner,"
        f" {SCALING['videos']} synthetic videos at {SCALING['width']}x{SCALING['height']},"
        f" {SCALING['fps']} fps, {s.video_s:.1f} video-s;"
        f" load average {s.load:.1f} on {os.cpu_count()} cores before",
        f"  {'workers':>9} {'wall s':>8} {'task span s':>12} {'CPU s':>7} {'cores busy':>11}"
        f" {'processes':>10} {'tasks':>6}",
        *(
            f"  {n:>9} {s.wall_s[n]:8.2f} {span[n]:>12} {s.cpu_s[n]:7.2f} {s.cpu_s[n] / s.wall_s[n]:11.2f}"
            f" {s.pids[n]:>10} {s.tasks[n]:>6}"
            for n in (1, 2)
        ),
        f"  {'speedup':>9} {wall_x:7.2f}x {span_x:>12}"
        f"   goal >= 1.7x on wall: {'met' if wall_x >= 1.7 else 'NOT met'}",
        "  wall: the flow call + write_outputs, with starting the worker processes (imports, model);",
        "    untimed: the Prefect server's start and a warm-up flow. task span: first task start to",
        "    last task end as the Prefect server recorded them (annotation only). CPU s: bench + workers.",
        f"  outputs of 1 and 2 workers (clips.parquet + {s.files - 1} shards, sha256): {same}",
        *(["  svd/ or flows/ was edited during these runs: the comparison is void"] if s.edited else []),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    t0 = time.perf_counter()
    import learned_gpu  # here: Prefect's workers re-import this module and need no torch models

    print(table(main()))
    print("\n".join(learned_gpu.main()))
    print(f"(bench took {time.perf_counter() - t0:.0f} s)")
