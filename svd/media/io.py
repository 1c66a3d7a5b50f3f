"""Video in and out through PyAV: the one module that knows about containers, pixels and time.

Everything above it sees frames as uint8 (T, H, W, 3) RGB arrays at DISPLAY size, as a player shows
them: non-square pixels stretched by the sample aspect ratio (SAR), then the container's rotation
applied. Times are seconds from the stream's first frame, taken from pts, so a phone video with a
rotation flag, an anamorphic DVD rip, a variable-frame-rate screen recording or a stream whose first
pts is not zero reads like any other.

A source is a path or the bytes of a file in memory (a clip that lives only inside a shard).
Decoding uses `threads` threads (default 1: a worker pool pins one per worker); 0 lets FFmpeg pick.
Encoding is single-threaded with fixed options and no timestamps in the container, so the same frames
give the same bytes on any machine: x264's multi-threaded decisions depend on the core count.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

Source = str | os.PathLike[str] | bytes

# Container format per file suffix; PyAV cannot guess it for temporary names.
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
FORMATS |= {".ts": "mpegts", ".mts": "mpegts", ".mpg": "mpeg"}

# Pixel formats libx264 codes losslessly as they are (PyAV 18's bundled x264: 8 and 10 bit, 4:2:0 to
# 4:4:4, grey). Any other goes through rgb24 and libx264rgb, which keeps the decoded RGB identical.
X264_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv16", "nv21"}
    | {"yuv420p10le", "yuv422p10le", "yuv444p10le", "nv20le", "gray", "gray10le"}
)
# The muxer's "+bitexact" drops the library version string; mp4's creation time is 0 unless set.
BITEXACT = {"fflags": "+bitexact"}


class VideoError(Exception):
    """A video that cannot be read or written. The message starts with the file's path."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path | None  # None: bytes in memory
    fps: float  # average rate (frames / duration): also the right thing for variable frame rate
    frames: int
    width: int  # as displayed: stored width x sar (rounded to even), then rotation
    height: int
    rotation: int  # counter-clockwise degrees the player applies (PyAV's VideoFrame.rotation)
    seconds: float
    sar: Fraction  # sample (pixel) aspect ratio; 1 when the file does not say
    pix_fmt: str  # as decoded, e.g. "yuv420p", "yuv444p10le"
    codec: str  # decoder name, e.g. "h264", "vp9"


@dataclass(frozen=True, slots=True)
class Decoded:
    index: int  # presentation order, 0 = the stream's first frame
    time: float  # seconds from the stream's start, from pts
    key: bool
    frame: av.VideoFrame


def why(e: Exception) -> str:
    """FFmpeg's reason without the errno and the file name it repeats."""
    return getattr(e, "strerror", None) or str(e)


def _name(src: Source) -> str:
    return "<memory>" if isinstance(src, bytes) else str(src)


def _size(src: Source) -> int:
    try:
        return len(src) if isinstance(src, bytes) else os.stat(src).st_size
    except OSError as e:
        raise VideoError(f"{_name(src)}: cannot open: {why(e)}") from None


def video_stream(container: Any) -> Any:
    """The video of a container, as FFmpeg picks it (av_find_best_stream), not the first video
    stream: a downloaded video often carries its thumbnail as a one-frame stream ahead of the
    video, which FFmpeg's choice passes over. None when the container has no video stream."""
    return container.streams.best("video")


@contextmanager
def _open(src: Source, threads: int = 1) -> Iterator[tuple[Any, Any]]:
    """(container, its video stream) set up to decode with `threads` threads; every failure
    becomes a VideoError that says what is wrong with the file, not only FFmpeg's errno text."""
    name, size = _name(src), _size(src)
    if size == 0:
        raise VideoError(f"{name}: empty file (0 bytes)")
    try:
        container = av.open(io.BytesIO(src) if isinstance(src, bytes) else str(src), metadata_errors="ignore")
    except av.InvalidDataError as e:
        raise VideoError(
            f"{name}: {_mp4_truncation(src, size) or f'not a video container: {why(e)}'}"
        ) from None
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{name}: cannot open: {why(e)}") from None
    try:
        fmt = container.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg opens a lone PNG or JPEG as 1 frame at 25 fps
            raise VideoError(f"{name}: a still image ({fmt}), not a video")
        s = video_stream(container)
        if s is None:  # a moov cut short may leave FFmpeg a valid-looking, empty index
            raise VideoError(f"{name}: {_mp4_truncation(src, size) or 'no video stream'}")
        s.codec_context.thread_count = threads
        if threads != 1:
            s.codec_context.thread_type = "AUTO"
        yield container, s
    except av.FFmpegError as e:
        raise VideoError(f"{name}: cannot decode: {why(e)}") from None
    finally:
        container.close()


def _mp4_truncation(src: Source, size: int) -> str | None:
    """Why an MP4/MOV that FFmpeg cannot open is cut short; None if it is no MP4 (random bytes fail
    the walk over top-level boxes)."""
    f = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115 - closed below
    with f:
        pos, kinds, over = 0, [], b""
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, kind = int.from_bytes(head[:4], "big"), head[4:8]
            n = int.from_bytes(head[8:16], "big") if n == 1 else n or size - pos
            if n < 8:
                return None
            kinds.append(kind)
            over = kind if pos + n > size else over
            pos += n
    if not kinds or kinds[0] not in (b"ftyp", b"mdat", b"free", b"wide", b"skip"):
        return None
    if b"moov" not in kinds:  # a writer that died, or a copy cut, before the index at the end
        return "truncated or unfinished (no moov atom)"
    return (
        f"truncated: its {over.decode(errors='replace')} box runs past the end of the file" if over else None
    )


def _fps(stream: Any, name: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise VideoError(f"{name}: unknown frame rate")
    return float(rate)


def _sar(stream: Any) -> Fraction:
    """The container's SAR wins over the bitstream's, as in FFmpeg's av_guess_sample_aspect_ratio."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and sar > 0 else Fraction(1)


def display_width(width: int, sar: Fraction) -> int:
    """Stored width stretched by the SAR, rounded to even (yuv420p encoders need even sides)."""
    return width if sar == 1 else max(2, round(width * sar / 2) * 2)


def probe(src: Source, threads: int = 1) -> VideoInfo:
    """Frame count by demuxing (headers of mkv/webm often have none), counting the frames a player
    shows: not the lead-in an mp4 edit list hides. Rotation and pixel format from the first frame,
    which also proves that the stream decodes at all.

    A file cut short says "truncated": mp4 by fewer packets than its sample table lists, or a last
    packet that runs past the end of the file; mkv/webm by packets that end before the duration in the
    header. The demuxer alone would hand over what is there and say nothing.
    """
    name = _name(src)
    with _open(src, threads) as (c, s):
        fps = _fps(s, name)
        frames, packets, first, end, cut = 0, 0, None, 0.0, False
        for pkt in c.demux():  # every stream: the header's duration covers them all
            if pkt.size == 0:  # the flush packet at the end
                continue
            cut = bool(pkt.is_corrupt)  # the demuxer's mark for a packet it could not read whole
            if pkt.pts is not None and pkt.time_base is not None:
                end = max(end, float((pkt.pts + (pkt.duration or 0)) * pkt.time_base))
            if pkt.stream.index != s.index:
                continue
            packets += 1
            frames += not pkt.is_discard  # behind an edit list: decoded as a reference, never shown
            if first is None:
                first = next(iter(s.decode(pkt)), None)
        if cut:
            raise VideoError(f"{name}: truncated: the last packet runs past the end of the file")
        if s.frames and packets < s.frames:
            raise VideoError(
                f"{name}: truncated: the header lists {s.frames} frames, the file holds {packets}"
            )
        if not s.frames and c.duration:
            said = ((c.start_time or 0) + c.duration) / av.time_base
            if end < said - max(0.1, 2 / fps):
                raise VideoError(
                    f"{name}: truncated: the header says {said:.2f}s, the packets end at {end:.2f}s"
                )
        if first is None:
            first = next(iter(s.decode(None)), None)
        if first is None:
            raise VideoError(f"{name}: no decodable video frame")
        sar, rotation = _sar(s), int(first.rotation)
        w, h = display_width(first.width, sar), first.height
        if _quarter_turns(rotation) % 2:
            w, h = h, w
        path = None if isinstance(src, bytes) else Path(src)
        return VideoInfo(
            path, fps, frames, w, h, rotation, frames / fps, sar, first.format.name, s.codec_context.name
        )


def _quarter_turns(rotation: int) -> int:
    if rotation % 90:
        raise ValueError(f"rotation {rotation} is not a multiple of 90 degrees")
    return (rotation // 90) % 4


def to_array(
    frame: av.VideoFrame, size: tuple[int, int] | None, sws: VideoReformatter, sar: Fraction = Fraction(1)
) -> np.ndarray:
    """One decoded frame as uint8 (H, W, 3) RGB, upright, at display size or at size=(height, width).

    With a size, the short side is scaled to fit and the rest centre-cropped, so the display aspect is
    kept. Scaling happens in swscale before rotating, so a 4K frame never exists as a full RGB array.
    Pass one `sws` per pass over a video: it keeps its scaler context, a fresh one per frame (PyAV's
    default) costs 10-25x more. `sar` is VideoInfo.sar: decoded frames do not carry it in PyAV.
    """
    k = _quarter_turns(frame.rotation)
    uw, uh = display_width(frame.width, sar), frame.height  # displayed, before rotation
    dw, dh = (uh, uw) if k % 2 else (uw, uh)
    if size is None:
        sw, sh = dw, dh
    else:
        scale = max(size[1] / dw, size[0] / dh)
        sw, sh = max(size[1], round(dw * scale)), max(size[0], round(dh * scale))
    w, h = (sh, sw) if k % 2 else (sw, sh)  # what swscale makes: the scaled picture before rotation
    if (w, h) == (frame.width, frame.height):
        img = sws.reformat(frame, format="rgb24", threads=1).to_ndarray()
    else:
        img = sws.reformat(
            frame, width=w, height=h, format="rgb24", interpolation="AREA", threads=1
        ).to_ndarray()
    if k:
        img = np.rot90(img, k)  # np.rot90 turns counter-clockwise, like the display matrix
    if size is not None:
        y, x = (sh - size[0]) // 2, (sw - size[1]) // 2
        img = img[y : y + size[0], x : x + size[1]]
    return np.ascontiguousarray(img)


def iter_decoded(src: Source, threads: int = 1, deblock: bool = True) -> Iterator[Decoded]:
    """Every decoded frame of the video stream with its index, time and keyframe flag.

    For a caller that needs several views of each frame from one decoding pass (cut detection and
    scores): turn frames into arrays with `to_array(d.frame, size, sws, info.sar)`. Frames are only
    valid until the next one is taken if the caller keeps no reference.

    deblock=False skips the in-loop deblocking filter (H.264, HEVC, VP9): a tenth to a fifth less
    decoding. Curation decodes so for every frame it looks at (cut detection, dense and picked
    scorer frames, all at 320 px or less): they differ a little from a player's (0.2-0.4 grey levels
    a pixel on testvideo.mp4 at 320x180), the same way on every run. Clips themselves are copied or
    re-encoded from fully decoded frames.
    """
    name = _name(src)
    with _open(src, threads) as (c, s):
        if not deblock:
            s.codec_context.options = {"skip_loop_filter": "all"}
        tb, t0 = s.time_base, s.start_time or 0
        rate = None
        for i, frame in enumerate(c.decode(s)):
            if frame.pts is None:
                rate = rate or _fps(s, name)
                t = i / rate
            else:
                t = float((frame.pts - t0) * tb)
            yield Decoded(i, t, bool(frame.key_frame), frame)


def iter_frames(
    path: Source,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    start: float = 0.0,
    end: float | None = None,
    max_frames: int | None = None,
    threads: int = 1,
) -> Iterator[np.ndarray]:
    """Streaming form of read_frames, for passes over whole long videos (cut detection)."""
    name = _name(path)
    stop = float("inf") if end is None else end
    emitted = 0
    with _open(path, threads) as (c, s):
        tb = s.time_base
        src_fps = _fps(s, name)
        sar = _sar(s)
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
                yield to_array(frame, size, sws, sar)
                continue
            if prev is not None:  # output times nearer to prev than to this frame take prev
                mid = (prev[1] + t) / 2
                while target < mid and target < stop and (max_frames is None or emitted < max_frames):
                    emitted += 1
                    yield to_array(prev[0], size, sws, sar)
                    target = start + emitted * step
            prev = (frame, t)
        if step is not None and prev is not None:  # tail: the last frame lasts 1 / src_fps
            stop = min(stop, prev[1] + 2 * half - 1e-9)
            while target < stop and (max_frames is None or emitted < max_frames):
                emitted += 1
                yield to_array(prev[0], size, sws, sar)
                target = start + emitted * step


def read_frames(
    path: Source,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    start: float = 0.0,
    end: float | None = None,
    max_frames: int | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Frames in [start, end) seconds as uint8 (T, H, W, 3) RGB, upright, at display size.

    fps resamples by taking, for each output time start + k / fps, the nearest source frame; size is
    (height, width): the short side is scaled to fit and the rest centre-cropped, so aspect is kept.
    """
    frames = list(iter_frames(path, fps, size, start, end, max_frames, threads))
    if not frames:
        raise VideoError(
            f"{_name(path)}: no frames between {start:.3f}s and {end if end is not None else 'end'}"
        )
    return np.stack(frames)


def read_at(
    path: Source, times: Sequence[float], sizes: Sequence[tuple[int, int] | None], threads: int = 1
) -> list[np.ndarray]:
    """The frame nearest to each time, each at its own size, from one decoding pass.

    This is how one decode of a clip feeds several scorers that want different frames at
    different sizes (flow at 2 fps and 16 px, text on three frames at detector size).
    """
    name = _name(path)
    if len(times) != len(sizes) or not times:
        raise ValueError(f"{name}: need one size per time and at least one time")
    order = sorted(range(len(times)), key=lambda i: times[i])
    out: list[np.ndarray | None] = [None] * len(times)
    j = 0  # next request in time order
    with _open(path, threads) as (c, s):
        tb, t0, sar = s.time_base, s.start_time or 0, _sar(s)
        first = times[order[0]]
        if first > 0:
            c.seek(t0 + int(first / tb), stream=s)
        prev: tuple[Any, float] | None = None
        sws = VideoReformatter()
        for count, frame in enumerate(c.decode(s)):
            t = float((frame.pts - t0) * tb) if frame.pts is not None else count / _fps(s, name)
            if prev is not None:
                mid = (prev[1] + t) / 2
                while j < len(order) and times[order[j]] < mid:
                    out[order[j]] = to_array(prev[0], sizes[order[j]], sws, sar)
                    j += 1
            if j == len(order):
                break
            prev = (frame, t)
        if prev is None:
            raise VideoError(f"{name}: no decodable frame")
        for i in order[j:]:
            out[i] = to_array(prev[0], sizes[i], sws, sar)
    return [a for a in out if a is not None]


def _encode(target: Any, fmt: str, frames: np.ndarray, fps: float, gop: int | None, crf: int) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be non-empty uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even height and width, got {h}x{w}")
    with av.open(target, "w", format=fmt, options=BITEXACT) as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.thread_count = 1
        # mbtree off: on clips shorter than its lookahead (an 8-frame sample) x264's macroblock-tree
        # rate control gave different bytes for the same frames from one call to the next
        s.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
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


def encode_lossless(
    frames: Iterable[av.VideoFrame],
    time_base: Fraction,
    rate: Fraction,
    *,
    sar: Fraction = Fraction(1),
    rotation: int = 0,
) -> bytes:
    """MP4 bytes whose decoded frames equal `frames` (decoded frames of a source) exactly.

    H.264 at qp 0 is lossless. A pixel format in X264_FORMATS is coded as it is, with the first frame's
    colour range, matrix, primaries and transfer, so decoding gives the same samples and hence the same
    RGB at any size; any other format is converted to rgb24 (as `to_array` does at stored size) and
    coded by libx264rgb, which keeps that RGB exact but not a resized one. Timestamps are the frames'
    own pts (in `time_base`) minus the first, so variable frame rate survives; SAR and rotation are
    written to the stream. One thread and fixed options: the same frames give the same bytes.
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("encode_lossless needs at least one frame")
    rgb = first.format.name not in X264_FORMATS
    t0 = first.pts or 0
    sws = VideoReformatter()
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format="mp4", options=BITEXACT) as c:
            s = c.add_stream("libx264rgb" if rgb else "libx264", rate=rate)
            s.width, s.height, s.pix_fmt = first.width, first.height, "rgb24" if rgb else first.format.name
            s.codec_context.time_base = time_base
            s.codec_context.sample_aspect_ratio = sar
            s.sample_aspect_ratio = sar  # the mp4 pasp box, which players read
            s.codec_context.thread_count = 1
            if not rgb:
                cc = s.codec_context
                cc.color_range, cc.colorspace = first.color_range, first.colorspace
                cc.color_primaries, cc.color_trc = first.color_primaries, first.color_trc
            s.options = {"qp": "0", "preset": "ultrafast"}  # 2.3x veryfast's speed for 1.35x its bytes
            if rotation:
                s.set_display_rotation(rotation)
            for frame in chain([first], it):
                out = sws.reformat(frame, format="rgb24", threads=1) if rgb else frame
                pts, kind = frame.pts, frame.pict_type
                out.pts, out.time_base = (pts or 0) - t0, time_base
                out.pict_type = av.video.frame.PictureType.NONE  # else x264 obeys the source's frame types
                c.mux(s.encode(out))
                out.pts, out.pict_type = (
                    pts,
                    kind,
                )  # the encoder holds its own reference: give the caller's back
            c.mux(s.encode(None))
    except av.FFmpegError as e:
        raise VideoError(f"<memory>: cannot encode losslessly: {why(e)}") from None
    return buf.getvalue()
