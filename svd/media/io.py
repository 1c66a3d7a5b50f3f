"""Video in and out through PyAV: the one module that knows about containers, rotation and time.

Everything above it sees frames as uint8 (T, H, W, 3) RGB arrays, upright (the container's display
rotation applied, as a player would), and times in seconds from the stream's first frame, so a
phone video with a rotation flag or a stream whose first pts is not zero reads like any other.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

# Container format per file suffix; PyAV cannot guess it for temporary names.
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}


class VideoError(Exception):
    """A video that cannot be read or written. The message starts with the file's path."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frames: int
    width: int  # as displayed, i.e. after rotation
    height: int
    rotation: int  # counter-clockwise degrees the player applies (PyAV's VideoFrame.rotation)
    seconds: float


def why(e: Exception) -> str:
    """FFmpeg's reason without the errno and the file name it repeats."""
    return getattr(e, "strerror", None) or str(e)


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    """Open for reading; any FFmpeg failure (missing moov, garbage, no video) becomes a VideoError."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{path}: cannot open: {why(e)}") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        yield container
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode: {why(e)}") from None
    finally:
        container.close()


def _fps(stream: Any, path: Path) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise VideoError(f"{path}: unknown frame rate")
    return float(rate)


def probe(path: str | Path) -> VideoInfo:
    """Frame count by demuxing (headers of mkv/webm often have none); rotation from the first frame,
    which also proves that the stream decodes at all."""
    path = Path(path)
    with _open(path) as c:
        s = c.streams.video[0]
        fps = _fps(s, path)
        frames, rotation = 0, None
        for packet in c.demux(s):
            if packet.size == 0:  # the flush packet at the end
                continue
            frames += 1
            if rotation is None:
                rotation = next((f.rotation for f in s.decode(packet)), None)
        if rotation is None:
            rotation = next((f.rotation for f in s.decode(None)), None)
        if rotation is None:
            raise VideoError(f"{path}: no decodable video frame")
        w, h = s.codec_context.width, s.codec_context.height
        if _quarter_turns(rotation) % 2:
            w, h = h, w
        return VideoInfo(path, fps, frames, w, h, int(rotation), frames / fps)


def _quarter_turns(rotation: int) -> int:
    if rotation % 90:
        raise ValueError(f"rotation {rotation} is not a multiple of 90 degrees")
    return (rotation // 90) % 4


def _to_array(frame: Any, size: tuple[int, int] | None, sws: VideoReformatter) -> np.ndarray:
    """Scale in swscale before rotating, so a 4K frame never exists as a full RGB array. One `sws` per
    pass keeps its scaler context: a fresh one per frame (PyAV's default) costs 10-25x more."""
    k = _quarter_turns(frame.rotation)
    dw, dh = (frame.height, frame.width) if k % 2 else (frame.width, frame.height)  # displayed size
    if size is None:
        img = sws.reformat(frame, format="rgb24").to_ndarray()
        return np.ascontiguousarray(np.rot90(img, k)) if k else img
    h, w = size
    scale = max(w / dw, h / dh)  # short side to fit, the rest is cropped: aspect is kept
    sw, sh = max(w, round(dw * scale)), max(h, round(dh * scale))
    img = sws.reformat(
        frame, width=sh if k % 2 else sw, height=sw if k % 2 else sh, format="rgb24", interpolation="AREA"
    ).to_ndarray()
    if k:
        img = np.rot90(img, k)  # np.rot90 turns counter-clockwise, like the display matrix
    y, x = (sh - h) // 2, (sw - w) // 2
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def iter_frames(
    path: str | Path,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    start: float = 0.0,
    end: float | None = None,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Streaming form of read_frames, for passes over whole long videos (cut detection)."""
    path = Path(path)
    stop = float("inf") if end is None else end
    emitted = 0
    with _open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        tb = s.time_base
        src_fps = _fps(s, path)
        half = 0.5 / src_fps
        t0 = s.start_time or 0
        if start > 0:
            c.seek(t0 + int(start / tb), stream=s)  # lands on the keyframe at or before `start`
        step = None if fps is None else 1.0 / fps
        sws = VideoReformatter()
        stop -= 1e-9  # float slack: an output time k / fps that equals `end` is out
        target = start  # next output time when resampling
        prev: tuple[Any, float] | None = None
        count = 0
        for frame in c.decode(s):
            t = float((frame.pts - t0) * tb) if frame.pts is not None else count / src_fps
            count += 1
            if t < start - half:  # decoded from the keyframe before `start`
                continue
            if t >= stop - half or (max_frames is not None and emitted >= max_frames):
                break
            if step is None:
                emitted += 1
                yield _to_array(frame, size, sws)
                continue
            if prev is not None:  # output times nearer to prev than to this frame take prev
                mid = (prev[1] + t) / 2
                while target < mid and target < stop and (max_frames is None or emitted < max_frames):
                    emitted += 1
                    yield _to_array(prev[0], size, sws)
                    target = start + emitted * step
            prev = (frame, t)
        if step is not None and prev is not None:  # tail: the last frame lasts 1 / src_fps
            stop = min(stop, prev[1] + 2 * half - 1e-9)
            while target < stop and (max_frames is None or emitted < max_frames):
                emitted += 1
                yield _to_array(prev[0], size, sws)
                target = start + emitted * step


def read_frames(
    path: str | Path,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    start: float = 0.0,
    end: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Frames in [start, end) seconds as uint8 (T, H, W, 3) RGB, upright.

    fps resamples by taking, for each output time start + k / fps, the nearest source frame; size is
    (height, width): the short side is scaled to fit and the rest centre-cropped, so aspect is kept.
    """
    frames = list(iter_frames(path, fps, size, start, end, max_frames))
    if not frames:
        raise VideoError(f"{path}: no frames between {start:.3f}s and {end if end is not None else 'end'}")
    return np.stack(frames)


def read_at(
    path: str | Path, times: Sequence[float], sizes: Sequence[tuple[int, int] | None]
) -> list[np.ndarray]:
    """The frame nearest to each time, each at its own size, from one decoding pass.

    This is how one decode of a clip feeds several scorers that want different frames at
    different sizes (flow at 2 fps and 16 px, text on three frames at detector size).
    """
    path = Path(path)
    if len(times) != len(sizes) or not times:
        raise ValueError(f"{path}: need one size per time and at least one time")
    order = sorted(range(len(times)), key=lambda i: times[i])
    out: list[np.ndarray | None] = [None] * len(times)
    j = 0  # next request in time order
    with _open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        tb, t0 = s.time_base, s.start_time or 0
        first = times[order[0]]
        if first > 0:
            c.seek(t0 + int(first / tb), stream=s)
        prev: tuple[Any, float] | None = None
        sws = VideoReformatter()
        for count, frame in enumerate(c.decode(s)):
            t = float((frame.pts - t0) * tb) if frame.pts is not None else count / _fps(s, path)
            if prev is not None:
                mid = (prev[1] + t) / 2
                while j < len(order) and times[order[j]] < mid:
                    out[order[j]] = _to_array(prev[0], sizes[order[j]], sws)
                    j += 1
            if j == len(order):
                break
            prev = (frame, t)
        if prev is None:
            raise VideoError(f"{path}: no decodable frame")
        for i in order[j:]:
            out[i] = _to_array(prev[0], sizes[i], sws)
    return [a for a in out if a is not None]


def _encode(target: Any, fmt: str, frames: np.ndarray, fps: float, gop: int | None, crf: int) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be non-empty uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even height and width, got {h}x{w}")
    with av.open(target, "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": "medium"}
        if gop is not None:  # short GOPs make stream-copy clipping lose less at scene starts
            s.options |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def write_video(
    path: str | Path, frames: np.ndarray, fps: float, *, gop: int | None = None, crf: int = 18
) -> None:
    """H.264 yuv420p; written to a temporary name and renamed, so a reader never sees half a file."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise VideoError(f"{path}: unknown container suffix {path.suffix!r}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _encode(str(tmp), fmt, frames, fps, gop, crf)
        os.replace(tmp, path)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot encode: {why(e)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def encode_video(frames: np.ndarray, fps: float, *, gop: int | None = None, crf: int = 18) -> bytes:
    """MP4 bytes in memory, for shards and artifacts that never touch disk."""
    buf = io.BytesIO()
    try:
        _encode(buf, "mp4", frames, fps, gop, crf)
    except av.FFmpegError as e:
        raise VideoError(f"<memory>: cannot encode: {why(e)}") from None
    return buf.getvalue()
