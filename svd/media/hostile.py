"""A folder of nasty inputs, each with the outcome curation must give it.

Scrapes are full of these: files cut short by a dead download or a writer that died before the index,
empty files, wrong suffixes, audio with a video name, a still image renamed, a thumbnail-sized video,
codecs and containers beyond H.264-in-MP4, 10-bit 4:4:4, 4K, non-square pixels, rotation flags,
variable frame rate, and names with spaces, non-ASCII or near the 255-byte limit. Every video here
is tiny and every "ok" one holds a single scene of 1.5 s or more, so it yields a clip; the whole
corpus takes a few seconds.

Expected outcomes per file (a path relative to the folder):
    ok      annotated: at least one clip
    empty   readable, but no scene long enough for a clip (a 1-frame video)
    failed  one failed row whose error contains `Expect.reason`: probing the file finds it, or for a
            whole video too poor to annotate, curation does
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

from svd.media.io import BITEXACT, FORMATS

FPS = 12
SIZE = (48, 64)  # (height, width)
LONG_NAME = "long-" + "n" * 231 + ".mp4"  # 240 bytes: with a 15-byte temp prefix or suffix still under 255


@dataclass(frozen=True)
class Expect:
    outcome: Literal["ok", "failed", "empty"]
    reason: str = ""  # a substring of a failed row's error
    found_by: Literal["probe", "curation"] = "probe"  # curation: a whole video, too poor to annotate


def _pattern(n: int, h: int, w: int) -> Iterator[np.ndarray]:
    """A gradient drifting right with a bright square crossing it: motion, no cut, no dark frames."""
    row = np.linspace(40, 215, w).astype(np.uint8)
    col = np.linspace(60, 200, h).astype(np.uint8)
    side = max(4, min(h, w) // 4)
    for i in range(n):
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = np.roll(row, 2 * i * max(1, w // 64))[None, :]
        img[..., 1] = col[:, None]
        img[..., 2] = 128
        x = (i * (w - side)) // max(1, n - 1)
        img[h // 4 : h // 4 + side, x : x + side] = 250
        yield img


def make_video(
    path: Path,
    n: int,
    size: tuple[int, int] = SIZE,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: int = FPS,
    sar: Fraction | None = None,
    rotation: int = 0,
    times_ms: list[int] | None = None,
    gop: int | None = None,
    options: dict[str, str] | None = None,
    cover: bool = False,
) -> None:
    """`n` frames of the drifting pattern, in the container of the suffix; also how tests build odd
    sources. `options` go to the muxer, `times_ms` are pts for variable frame rate, `cover` puts a
    one-frame MJPEG picture in the first video stream, as a downloader embeds a thumbnail."""
    h, w = size
    # a path, not bytes in memory: faststart reads the file back to move the index to the front
    fmt = FORMATS[path.suffix.lower()]
    with av.open(str(path), "w", format=fmt, options=BITEXACT | (options or {})) as c:
        if cover:
            thumb: Any = c.add_stream("mjpeg", rate=1)
            thumb.width, thumb.height, thumb.pix_fmt = w, h, "yuvj420p"
        s: Any = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.codec_context.thread_count = 1
        if codec == "libx264":
            s.options = {"preset": "ultrafast"}
        elif codec.startswith("libvpx"):
            s.options = {"deadline": "realtime", "cpu-used": "8"}
        if gop is not None:
            s.options |= {"g": str(gop)}
        if times_ms is not None:  # pts in milliseconds: a coarser time base would round them regular
            s.codec_context.time_base = Fraction(1, 1000)
        if sar is not None:
            s.codec_context.sample_aspect_ratio = s.sample_aspect_ratio = sar
        if rotation:
            s.set_display_rotation(rotation)
        if cover:  # every stream is added before the first packet is muxed
            c.mux(thumb.encode(av.VideoFrame.from_ndarray(next(_pattern(1, h, w)), format="rgb24")))
            c.mux(thumb.encode(None))
        for i, img in enumerate(_pattern(n, h, w)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def _cut(path: Path, keep: float) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def _audio(path: Path) -> None:
    """2 s of a 440 Hz tone as AAC in MP4: a real media file with no video stream."""
    rate, n = 16000, 1024
    with av.open(str(path), "w", format="mp4", options=BITEXACT) as c:
        s: Any = c.add_stream("aac", rate=rate, layout="mono")
        for k in range(2 * rate // n):
            t = (np.arange(n) + k * n) / rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(wave, "fltp", "mono")
            frame.sample_rate, frame.pts = rate, k * n
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def make_hostile_corpus(out: Path) -> dict[str, Expect]:
    """Write the corpus into `out` (files of an earlier call are overwritten) and return
    {path relative to `out`, posix: what curation must make of it}."""
    (out / "dup").mkdir(parents=True, exist_ok=True)
    n = 2 * FPS  # 2 s
    gaps = [40, 120, 60, 100, 80]  # ms between frames: 25 down to 8 fps
    ok = Expect("ok")
    expect = {
        "plain.mp4": ok,
        "empty.mp4": Expect("failed", "empty file"),
        "truncated moov-last.mp4": Expect("failed", "truncated"),
        "truncated faststart.mp4": Expect("failed", "truncated"),
        "truncated.mkv": Expect("failed", "truncated"),
        "random.mp4": Expect("failed", "not a video container"),
        "audio only.mp4": Expect("failed", "no video stream"),
        "still png.mp4": Expect("failed", "still image"),
        "one frame.mp4": Expect("empty"),
        "8x8.mp4": Expect("failed", "too small to score: 8x8 px", "curation"),  # a thumbnail saved as a video
        "sliver.mp4": Expect("failed", "too small to score: 640x48 px is scanned at 128x10", "curation"),
        "vfr.mp4": ok,
        "4k.mp4": ok,
        "yuv444p10.mp4": ok,
        "vp9.webm": ok,
        "vp8.webm": ok,
        "h264.mkv": ok,
        "h264.mov": ok,
        "mpeg2.ts": ok,  # broadcast: MPEG-TS seeks by decode time, which runs a frame behind the pts
        "camera.MTS": ok,  # a camcorder's H.264 in MPEG-TS, the suffix in capitals
        "mpeg2.mpg": ok,  # MPEG program stream
        "cover art.mkv": ok,  # a thumbnail as the first video stream, the video second
        "anamorphic.mp4": ok,
        "rotated.mp4": ok,
        "été vidéo 東京.mp4": ok,
        LONG_NAME: ok,
        "dup/plain.mp4": ok,
    }
    make_video(out / "plain.mp4", n)
    (out / "empty.mp4").write_bytes(b"")
    make_video(out / "truncated moov-last.mp4", n)  # FFmpeg's mp4 muxer writes the index (moov) last
    _cut(out / "truncated moov-last.mp4", 0.5)
    make_video(out / "truncated faststart.mp4", n, options={"movflags": "+faststart"})  # index first
    _cut(out / "truncated faststart.mp4", 0.6)
    make_video(out / "truncated.mkv", n)
    _cut(out / "truncated.mkv", 0.6)
    (out / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    _audio(out / "audio only.mp4")
    (out / "still png.mp4").write_bytes(cv2.imencode(".png", next(_pattern(1, *SIZE)))[1].tobytes())
    make_video(out / "one frame.mp4", 1)
    make_video(out / "8x8.mp4", n, (8, 8))
    make_video(out / "sliver.mp4", n, (48, 640))  # a 13:1 banner: scanned too thin for the motion scorer
    make_video(out / "vfr.mp4", n, times_ms=[sum(gaps[j % len(gaps)] for j in range(i)) for i in range(n)])
    make_video(out / "4k.mp4", 9, (2160, 3840), fps=6)  # 1.5 s
    make_video(out / "yuv444p10.mp4", n, pix_fmt="yuv444p10le")
    make_video(out / "vp9.webm", n, codec="libvpx-vp9")
    make_video(out / "vp8.webm", n, codec="libvpx")  # mp4 cannot hold VP8: its clips are re-encoded
    make_video(out / "h264.mkv", n)
    make_video(out / "h264.mov", n)
    make_video(out / "mpeg2.ts", n, codec="mpeg2video")
    make_video(out / "camera.MTS", n)
    make_video(out / "mpeg2.mpg", n, codec="mpeg2video")
    make_video(out / "cover art.mkv", n, cover=True)
    make_video(out / "anamorphic.mp4", n, (96, 64), sar=Fraction(2))  # shown as 128x96
    make_video(out / "rotated.mp4", n, rotation=90)  # shown as 48x64
    make_video(out / "été vidéo 東京.mp4", n + 1)
    make_video(out / LONG_NAME, n + 2)
    (out / "dup" / "plain.mp4").write_bytes((out / "plain.mp4").read_bytes())
    return expect
