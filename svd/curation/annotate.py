"""Raw videos -> clip table: cuts, keyframe-snapped clips, motion and text scores, captions.

`annotate_video` is the unit of work (one source video -> its rows) so a flow can fan it out over
workers; `curate` is the serial walk plus the table. Errors are rows, not exceptions: a video that
cannot be read is one row with status "failed" and the reason, a clip that fails likewise, and the
batch goes on (video2dataset's rule: one corrupt file never kills a shard).

Per clip, one decoding pass feeds every scorer (io.read_at): flow frames at MotionParams.fps and
short_side px, text frames (first / middle / last) at TextParams.side px.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from svd.curation.captions import Captioned, caption_for, read_sidecar
from svd.curation.clip import PacketIndex, extract_clip, index_packets
from svd.curation.cuts import detect_scenes
from svd.curation.motion import flow_size, motion_score, sample_times
from svd.curation.text import clip_text_area, text_size
from svd.media.io import VideoInfo, probe, read_at
from svd.params import CurateParams

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
COLUMNS: dict[str, str] = {  # the clip table's schema; failed rows leave scores null
    "video": "string",
    "clip": "string",
    "path": "string",  # relative to CurateParams.out
    "start_frame": "Int64",
    "end_frame": "Int64",  # exclusive
    "start_s": "float64",
    "end_s": "float64",
    "seconds": "float64",
    "fps": "float64",
    "width": "Int64",
    "height": "Int64",
    "frames": "Int64",
    "motion_score": "float64",
    "text_area": "float64",
    "caption": "string",
    "caption_source": "string",
    "reencoded": "boolean",
    "status": "string",
    "error": "string",
}


def video_key(path: Path) -> str:
    """Name stem plus a content hash: stable across machines and renames of the folder, distinct
    for two different files that share a name."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "video"
    return f"{stem}-{h.hexdigest()[:8]}"


def _failed(video: Path, clip: str | None, error: str, **known: Any) -> dict[str, Any]:
    return {"video": str(video), "clip": clip, "status": "failed", "error": error, **known}


def measure(
    clip: Path, frames: int, fps: float, width: int, height: int, p: CurateParams
) -> tuple[float, float]:
    """(motion_score, text_area) of one clip, from a single decoding pass over it."""
    flow_times = sample_times(frames, fps, p.motion)
    at = {"first": 0, "middle": frames // 2, "last": frames - 1}
    text_times = [at[name] / fps for name in p.text.frames]
    fsize, tsize = flow_size(width, height, p.motion.short_side), text_size(width, height, p.text.side)
    got = read_at(clip, flow_times + text_times, [fsize] * len(flow_times) + [tsize] * len(text_times))
    flow, text = got[: len(flow_times)], got[len(flow_times) :]
    # already at p.motion.fps and flow size: motion_score's resampling and scaling are no-ops
    return motion_score(np.stack(flow), p.motion.fps, p.motion), clip_text_area(text)


def annotate_video(path: str | Path, p: CurateParams) -> list[dict[str, Any]]:
    """All rows of one source video; clips are written to p.out / "clips"."""
    path = Path(path)
    key = None
    try:
        key = video_key(path)
        info = probe(path)
        captions = read_sidecar(path)
        index = index_packets(path)
        scenes = detect_scenes(path, info, p.cuts)
    except Exception as e:  # any reason at all: this video becomes a failed row, the batch goes on
        log.warning("%s: failed: %s", path, e)
        return [_failed(path, key, _reason(path, e))]
    min_frames = math.ceil(p.min_clip_seconds * info.fps - 1e-6)
    rows = []
    for a, b in scenes:
        if b - a < min_frames:
            continue
        rows.append(_annotate_clip(path, key, info, index, (a, b), min_frames, captions, p))
    log.info("%s: %d scenes, %d clips", path, len(scenes), len(rows))
    return rows


def _annotate_clip(
    path: Path,
    key: str,
    info: VideoInfo,
    index: PacketIndex,
    scene: tuple[int, int],
    min_frames: int,
    captions: list[Captioned] | None,
    p: CurateParams,
) -> dict[str, Any]:
    clip_key = f"{key}-{scene[0]:06d}"  # by scene start: does not move if the GOP length changes
    try:
        clip = extract_clip(path, info, index, scene, p.out / "clips" / f"{clip_key}.mp4", min_frames)
        got = probe(clip.path)  # also proves the clip decodes on its own
        frames = clip.end_frame - clip.start_frame
        motion, text = measure(clip.path, frames, info.fps, got.width, got.height, p)
        start_s, end_s = index.seconds(clip.start_frame), index.seconds(clip.end_frame)
        caption, source = caption_for(captions, start_s, end_s)
        return {
            "video": str(path),
            "clip": clip_key,
            "path": str(clip.path.relative_to(p.out)),
            "start_frame": clip.start_frame,
            "end_frame": clip.end_frame,
            "start_s": start_s,
            "end_s": end_s,
            "seconds": end_s - start_s,
            "fps": info.fps,
            "width": got.width,
            "height": got.height,
            "frames": frames,
            "motion_score": motion,
            "text_area": text,
            "caption": caption,
            "caption_source": source,
            "reencoded": clip.reencoded,
            "status": "ok",
            "error": None,
        }
    except Exception as e:  # this clip becomes a failed row; the video's other clips go on
        log.warning("%s: clip %s failed: %s", path, scene, e)
        return _failed(path, clip_key, _reason(path, e), start_frame=scene[0], end_frame=scene[1])


def _reason(path: Path, e: Exception) -> str:
    msg = str(e)
    return msg if str(path) in msg else f"{path}: {type(e).__name__}: {msg}"


def list_videos(sources: tuple[Path, ...], exclude: Path | None = None) -> list[Path]:
    """Every video under every source folder, sorted, skipping hidden files and `exclude`."""
    found = []
    for src in sources:
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: source folder does not exist")
        for f in src.rglob("*"):
            if f.suffix.lower() not in VIDEO_SUFFIXES or not f.is_file() or f.name.startswith("."):
                continue
            if exclude is not None and f.resolve().is_relative_to(exclude.resolve()):
                continue
            found.append(f)
    return sorted(set(found))


def to_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(COLUMNS).reset_index(drop=True)


def curate(p: CurateParams, seed: int = 0) -> pd.DataFrame:
    """Annotate every source video; write p.out/clips/*.mp4 and p.out/clips.parquet (atomically).

    Every step is deterministic; `seed` is recorded in the table's attrs so that a stage that later
    samples (e.g. among several captions) is reproducible from the same place.
    """
    rows = [row for v in list_videos(p.sources, exclude=p.out) for row in annotate_video(v, p)]
    table = to_table(rows)
    table.attrs["seed"] = seed
    clips = p.out / "clips"
    if clips.is_dir():  # clips of an earlier run that this table no longer lists
        keep = {Path(x).name for x in table["path"].dropna()}
        for f in clips.glob("*.mp4"):
            if f.name not in keep:
                f.unlink()
    p.out.mkdir(parents=True, exist_ok=True)
    write_table(table, p.out / "clips.parquet")
    return table


def write_table(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
