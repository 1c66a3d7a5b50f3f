"""One source video -> its rows and its clips: what a fanned-out task does for each of its videos.

    1. hash the file (keys, duplicates and the cache all hang on the content, not the name)
    2. one decode pass over every frame: the scene detector sees each frame at detection size, and
       the dense frames of the scorers (motion at 2 fps, 16 px) are cut from the same frame
    3. scenes of at least min_clip_seconds -> clips, by stream copy from a keyframe (or a lossless
       re-encode when snapping would leave too little); a short scene is dropped, never merged
    4. picked frames (first / middle / last of each clip, or fractions of it) at the size of each
       scorer that picks them, kept from the same pass (svd.curation.picks), or decoded by seeking
    5. every scorer scores every clip; captions come from the source's sidecar when it has one, and
       the scores of a scorer that reads them (caption similarity) are keyed on the video's captions

Steps 2-3 and each scorer's columns are cached (svd.curation.cache) under the video's hash, their
params and their code, so a resumed run, or a run that changed one scorer's params, decodes and
computes only what is missing. Errors are rows, not exceptions: a video that cannot be read becomes
one failed row naming the file and the reason, a clip that fails likewise, and the run goes on
(video2dataset's rule: one corrupt file never kills a shard).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from av.video.reformatter import VideoReformatter

from svd import storage
from svd.curation import cache, picks, scorers
from svd.curation.captions import Captioned, SidecarError, caption_for, read_sidecar
from svd.curation.extract import PacketIndex, extract_clip, index_packets
from svd.curation.models import LOADS
from svd.curation.scenes import SceneDetector, detection_size, scenes
from svd.curation.scorers.base import ClipFrames, Frames
from svd.media.io import VideoError, VideoInfo, iter_decoded, probe, to_array
from svd.params import CurateParams

log = logging.getLogger(__name__)

# What listing takes for a video (any case): FFmpeg reads far more, but these are the containers
# cameras, phones, broadcast and the web write; anything else in a source folder (sidecars) is not one.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ogv", ".flv", ".wmv")
VIDEO_SUFFIXES += (".3gp", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg")  # phones, broadcast, camcorders, DVD
STEM_CHARS = 40  # of the file name in keys: keys stay far below any file-system or tar limit
PRUNE_EVERY = 16  # frames between the pick keeper's prunings


@dataclass
class VideoResult:
    """What a worker hands back: small, so it travels cheaply from a Ray worker."""

    video: str
    rows: list[dict[str, Any]]
    clips_entry: str | None = None  # cache entry holding the clip bytes (svd.curation.cache)
    worker: int = field(default_factory=os.getpid)
    model_loads: dict[str, int] = field(default_factory=dict)  # per process, to prove once per worker
    # the GPUs the worker was given (a Ray task asking for a share of one), as CUDA_VISIBLE_DEVICES
    devices: str | None = field(default_factory=lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))


def video_key(uri: str, sha: str) -> str:
    """A readable stem plus the content hash: the same on every machine and after a folder rename,
    distinct for two different files that share a name, bounded in length, and free of dots (a
    WebDataset key ends at the first dot)."""
    stem = storage.name(uri).rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:STEM_CHARS] or "video"
    return f"{stem}-{sha[:10]}"


def pin_threads() -> None:
    """One thread per worker for OpenCV and BLAS: parallelism comes from the runner, and N workers x
    M threads on a few cores spin instead of working."""
    import cv2

    cv2.setNumThreads(1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def annotate_video(uri: str, p: CurateParams) -> VideoResult:
    pin_threads()
    try:
        with storage.local_copy(uri) as path:
            result = _annotate(uri, path, p)
    except Exception as e:  # any reason at all: this video is one failed row, the run goes on
        log.warning("%s: failed: %s", uri, e)
        result = VideoResult(uri, [_video_row(uri, None, None, "failed", _reason(uri, e))])
    result.model_loads = dict(LOADS)
    return result


def _annotate(uri: str, path: Path, p: CurateParams) -> VideoResult:
    if path.stat().st_size == 0:
        raise VideoError(f"{uri}: empty file (0 bytes)")
    sha = storage.file_sha256(path)
    key = video_key(uri, sha)
    info = probe(path)
    index = index_packets(path)
    clips_entry = cache.clips_entry(p, sha)
    clips = cache.get_clips(clips_entry)
    specs = {n: scorers.instance(n, p.scorers[n]).frames() for n in p.scorers}
    dense = {n: f for n, f in specs.items() if f.fps is not None}
    detection = detection_size(info.width, info.height, p.cuts)
    for n, f in dense.items():  # dense frames are cut from the detection-size frames of the one pass
        (h, w), (det_h, det_w) = f.size(info.width, info.height), detection
        if h > det_h or w > det_w:  # a thumbnail-sized video, or a sliver (over 8:1)
            size = f"{info.width}x{info.height} px is scanned at {det_w}x{det_h}"
            raise VideoError(f"{uri}: too small to score: {size}, and scorer {n} reads frames of {w}x{h}")
    viewer = picks.Viewer(info, picks.pick_sizes(specs, info), detection)
    grabbed: dict[str, dict[int, np.ndarray]] = {}
    keeper = None
    if clips is None:
        detector = SceneDetector(info.fps, p.cuts)
        if viewer.sizes:
            keeper = picks.Keeper([k for f in specs.values() for k in f.picks], detector.lag)
        keep = (keeper, viewer) if keeper is not None else None
        grabbed = _decode_pass(path, info, index, detection, detector, dense, keep)
        clips = _cut(path, key, info, index, detector.finish(), p)
        cache.put_clips(clips_entry, clips)
    sidecar, warning = _captions(uri)
    captioned = [
        caption_for(sidecar, c["start_s"], c["end_s"]) if "start_s" in c else ("", "") for c in clips.meta
    ]
    captions = [c for c, _ in captioned]
    entries = {
        n: cache.scores_entry(p, clips_entry, n, captions if f.caption else None) for n, f in specs.items()
    }
    cached = {n: cache.get_scores(e) for n, e in entries.items()}
    scores = {n: hit for n, hit in cached.items() if hit is not None}
    todo = {n: f for n, f in specs.items() if n not in scores}
    if not grabbed and any(n in dense for n in todo):
        grabbed = _decode_pass(
            path, info, index, detection, None, {n: f for n, f in todo.items() if n in dense}
        )
    ok = [c for c in clips.meta if not c.get("error")]
    picked = picks.picked(path, viewer, index, ok, todo, keeper)
    for n, spec in todo.items():
        if spec.fps is not None:
            order = grid(index, spec.fps)
            inputs = [[grabbed[n][j] for j in order if c["start_frame"] <= j < c["end_frame"]] for c in ok]
        else:
            inputs = picked.get(n, [[] for _ in ok])  # a scorer that needs no frames gets none
        scores[n] = _score(n, clips.meta, inputs, spec.fps or info.fps, info, captions, p)
        cache.put_scores(entries[n], scores[n])
    scores = {n: scores[n] for n in specs}  # the columns in params order, cached or not
    rows = []
    for i, c in enumerate(clips.meta):
        if c.get("error"):
            rows.append(_video_row(uri, sha, c["clip"], "failed", c["error"]) | _span(c))
            continue
        failed = [s[i]["error"] for s in scores.values() if "error" in s[i]]
        if failed:
            rows.append(_video_row(uri, sha, c["clip"], "failed", f"{uri}: " + "; ".join(failed)) | _span(c))
            continue
        caption, source = captioned[i]
        row = _video_row(uri, sha, c["clip"], "ok", None) | _span(c)
        row |= {"fps": info.fps, "width": info.width, "height": info.height, "reencoded": c["reencoded"]}
        row |= {"caption": caption, "caption_source": source, "warning": warning}
        for s in scores.values():
            row |= s[i]
        rows.append(row)
    if not rows:
        why = (
            f"{uri}: no scene of at least {p.min_clip_seconds} s "
            f"({info.frames} frame(s), {info.seconds:.2f} s, {len(clips.transitions)} transition(s))"
        )
        rows = [_video_row(uri, sha, key, "empty", why) | {"warning": warning}]
    log.info("%s: %d clips", uri, sum(r["status"] == "ok" for r in rows))
    return VideoResult(uri, rows, clips_entry)


def _decode_pass(
    path: Path,
    info: VideoInfo,
    index: PacketIndex,
    detection: tuple[int, int],
    detector: SceneDetector | None,
    dense: dict[str, Frames],
    keep: tuple[picks.Keeper, picks.Viewer] | None = None,
) -> dict[str, dict[int, np.ndarray]]:
    """Decode every frame once: feed the detector, keep each dense scorer's grid frames, and hand
    `keep`'s keeper every frame as the pick scorers see it. Frames are scaled to `detection` (height,
    width) first, the size the detector works at, and every grid frame is made from that."""
    det_h, det_w = detection
    grids = {n: set(grid(index, f.fps or 1.0)) for n, f in dense.items()}
    sizes = {n: f.size(info.width, info.height) for n, f in dense.items()}
    import cv2

    grabbed: dict[str, dict[int, np.ndarray]] = {n: {} for n in dense}
    sws = VideoReformatter()
    for d in iter_decoded(path, deblock=False):
        pts = -1 if d.frame.pts is None else d.frame.pts
        i = index.frame_of.get(pts, d.index)
        small = to_array(d.frame, (det_h, det_w), sws, info.sar)
        if detector is not None:
            detector.push(small)
        for n, frames in grabbed.items():
            if i in grids[n]:
                h, w = sizes[n]
                frames[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_AREA)
        if keep is not None and detector is not None:
            keeper, viewer = keep
            if pts in index.frame_of:  # a frame a seek could not find by its pts is left to fail there
                keeper.add(i, viewer.grab(d.frame, small))
            if i % PRUNE_EVERY == 0:
                keeper.prune(i, detector.boundaries())
    return grabbed


def grid(index: PacketIndex, fps: float) -> list[int]:
    """The frame nearest to each time k / fps of the video (ties to the earlier frame), with
    repeats when the source is slower than `fps`: the same list whichever clip asks."""
    times = np.array([index.seconds(i) for i in range(len(index.pts))])
    steps = math.ceil(index.seconds(len(index.pts)) * fps - 1e-9)
    t = np.arange(steps) / fps
    right = np.clip(np.searchsorted(times, t), 1, len(times) - 1) if len(times) > 1 else np.zeros(steps, int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(times[left] - t) <= np.abs(times[right] - t), left, right)
    return nearest.tolist()


def _cut(
    path: Path, key: str, info: VideoInfo, index: PacketIndex, transitions: list, p: CurateParams
) -> cache.Clips:
    min_frames = max(1, math.ceil(p.min_clip_seconds * info.fps - 1e-6))
    meta, data = [], []
    for a, b in scenes(transitions, len(index.pts)):
        if b - a < min_frames:
            continue  # too short for a clip; its frames are not given to a neighbour
        clip_key = f"{key}-{a:06d}"  # by scene start: stable if the GOP length changes
        try:
            c = extract_clip(path, info, index, (a, b), min_frames)
        except Exception as e:  # this clip fails alone; the video's other clips go on
            log.warning("%s: scene %d-%d failed: %s", path, a, b, e)
            meta.append({"clip": clip_key, "start_frame": a, "end_frame": b, "error": _reason(str(path), e)})
            data.append(b"")
            continue
        meta.append(
            {
                "clip": clip_key,
                "start_frame": c.start_frame,
                "end_frame": c.end_frame,
                "start_s": index.seconds(c.start_frame),
                "end_s": index.seconds(c.end_frame),
                "reencoded": c.reencoded,
            }
        )
        data.append(c.data)
    return cache.Clips(meta, data, [vars(t) for t in transitions])


def _score(
    name: str,
    clips: list[dict[str, Any]],
    inputs: list[list[np.ndarray]],
    rate: float,
    info: VideoInfo,
    captions: list[str],
    p: CurateParams,
) -> list[dict[str, Any]]:
    """The scorer's columns for every clip (`inputs`: the frames of each clip without an error), or
    an {"error": ...} entry for a clip it could not score. A scorer with `score_many` gets all clips
    at once (a model batches them); if that fails, each is scored alone, so only a bad clip fails."""
    scorer = scorers.instance(name, p.scorers[name])
    ok = [i for i, c in enumerate(clips) if not c.get("error")]
    given = [
        ClipFrames(f, rate, info.width, info.height, captions[i]) for i, f in zip(ok, inputs, strict=True)
    ]
    scored: list[dict[str, Any]] | None = None
    if hasattr(scorer, "score_many"):
        try:
            scored = scorer.score_many(given)
        except Exception as e:
            log.warning(
                "%s scorer failed on a batch of %d clips (%s): scoring them one by one", name, len(given), e
            )
    if scored is None:
        scored = []
        for i, clip in zip(ok, given, strict=True):
            try:
                scored.append(scorer.score(clip))
            except Exception as e:
                c = clips[i]
                scored.append({"error": f"{name} scorer on frames {c['start_frame']}-{c['end_frame']}: {e}"})
    out: list[dict[str, Any]] = [{"error": "not scored"} for _ in clips]
    for i, s in zip(ok, scored, strict=True):
        out[i] = s
    return out


def _captions(uri: str) -> tuple[list[Captioned] | None, str | None]:
    """The sidecar's captions; a malformed sidecar costs the captions, never the clips."""
    try:
        return read_sidecar(uri), None
    except SidecarError as e:
        log.warning("%s", e)
        return None, str(e)


def _span(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: c[k] for k in ("start_frame", "end_frame", "start_s", "end_s") if k in c}
    if "end_s" in c:
        out |= {"seconds": c["end_s"] - c["start_s"], "frames": c["end_frame"] - c["start_frame"]}
    return out


def _video_row(uri: str, sha: str | None, clip: str | None, status: str, error: str | None) -> dict[str, Any]:
    return {"video": uri, "video_sha256": sha, "clip": clip, "status": status, "error": error}


def _reason(uri: str, e: Exception) -> str:
    msg = str(e)
    return msg if uri in msg else f"{uri}: {type(e).__name__}: {msg}"


def list_videos(sources: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, int]:
    """Every video under every source (folder or s3:// prefix), sorted, with its size in bytes,
    skipping hidden files and anything under `exclude` (the run's own outputs, when they sit inside
    a source)."""
    skip = [str(Path(e).resolve()) if not storage.is_s3(e) else e for e in exclude]
    found: dict[str, int] = {}
    for src in sources:
        for f, size in storage.listdir(src).items():
            name = storage.name(f)
            if not name.lower().endswith(VIDEO_SUFFIXES) or name.startswith("."):
                continue
            full = f if storage.is_s3(f) else str(Path(f).resolve())
            if any(full == e or full.startswith(e.rstrip("/") + "/") for e in skip):
                continue
            found[f] = size
    return dict(sorted(found.items()))
