"""Clips cut from a source by copying packets, not re-encoding (paper Sec. 3.1).

A clip must start on a keyframe to decode on its own, so its start is snapped FORWARD to the first
keyframe at or after the scene start: backward would pull in frames of the previous scene across the
cut. Packets are then copied in decode order up to the first one whose presentation time is at or
past the scene end; B-frames shown before that point but decoded after it are dropped with it, which
costs at most a few frames at the tail but keeps every copied frame decodable.

When snapping leaves less than the minimum clip length (long GOPs, short scenes) the exact scene is
re-encoded instead and the row says reencoded=True, so the share of generation loss is visible.
Clips carry the video stream only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from svd.curation.cuts import Scene
from svd.media.io import VideoError, VideoInfo, read_frames, why, write_video


@dataclass(frozen=True)
class PacketIndex:
    """Frame i of the video (presentation order) has pts[i]; frames in `keyframes` start a GOP."""

    pts: np.ndarray  # int64, sorted, in time_base units
    keyframes: np.ndarray  # sorted frame indices
    time_base: Fraction
    start: int  # the stream's start_time: time 0 of io.read_frames

    def seconds(self, frame: int) -> float:
        if frame >= len(self.pts):  # one past the end: the last frame lasts as long as the one before
            step = self.pts[-1] - self.pts[-2] if len(self.pts) > 1 else 0
            return float((self.pts[-1] + step - self.start) * self.time_base)
        return float((self.pts[frame] - self.start) * self.time_base)


@dataclass(frozen=True)
class Clip:
    path: Path
    start_frame: int
    end_frame: int  # exclusive
    reencoded: bool


def index_packets(path: str | Path) -> PacketIndex:
    """Demux without decoding: cheap, and the only reliable source of keyframe positions."""
    path = Path(path)
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            pts, key = [], []
            for pkt in c.demux(s):
                if pkt.size == 0:
                    continue
                if pkt.pts is None:
                    raise VideoError(f"{path}: packet without pts, cannot clip by stream copy")
                pts.append(pkt.pts)
                key.append(pkt.is_keyframe)
            tb, start = s.time_base, s.start_time or 0
            if tb is None:
                raise VideoError(f"{path}: video stream has no time base")
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot demux: {why(e)}") from None
    if not pts:
        raise VideoError(f"{path}: no video packets")
    order = np.argsort(pts, kind="stable")
    return PacketIndex(
        np.asarray(pts, np.int64)[order], np.flatnonzero(np.asarray(key)[order]), Fraction(tb), start
    )


def extract_clip(
    src: str | Path, info: VideoInfo, index: PacketIndex, scene: Scene, out: Path, min_frames: int
) -> Clip:
    """Write the clip of `scene` to `out` (atomically) by stream copy, or re-encode it if too short."""
    src, (a, b) = Path(src), scene
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.mp4")
    try:
        later = index.keyframes[index.keyframes >= a]
        k = int(later[0]) if len(later) else b
        if b - k >= min_frames:
            start, end = _remux(src, info, index, k, b, tmp)
            if end - start >= min_frames:
                os.replace(tmp, out)
                return Clip(out, start, end, False)
        _reencode(src, info, index, (a, b), tmp)
        os.replace(tmp, out)
        return Clip(out, a, b, True)
    finally:
        tmp.unlink(missing_ok=True)


def _remux(src: Path, info: VideoInfo, index: PacketIndex, k: int, b: int, tmp: Path) -> tuple[int, int]:
    start_pts = int(index.pts[k])
    end_pts = int(index.pts[b]) if b < len(index.pts) else None
    kept: list[int] = []
    try:
        with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4") as outc:
            s = inp.streams.video[0]
            o = outc.add_stream_from_template(s)
            if info.rotation:  # the template copy drops the display matrix; players need it back
                o.set_display_rotation(info.rotation)
            inp.seek(start_pts, stream=s)  # the keyframe at start_pts: seek lands at or before it
            offset = None
            for pkt in inp.demux(s):
                if pkt.size == 0 or pkt.pts is None:
                    continue
                if offset is None:
                    if pkt.pts != start_pts or not pkt.is_keyframe:
                        continue
                    offset = pkt.dts if pkt.dts is not None else pkt.pts  # first dts 0: no negative dts
                if pkt.pts < start_pts:  # open-GOP leading frames refer to the previous GOP
                    continue
                if end_pts is not None and pkt.pts >= end_pts:
                    break
                kept.append(pkt.pts)
                pkt.pts -= offset
                if pkt.dts is not None:
                    pkt.dts -= offset
                pkt.stream = o
                outc.mux(pkt)
    except av.FFmpegError as e:
        raise VideoError(f"{src}: stream copy of frames {k}-{b} failed: {why(e)}") from None
    if not kept:
        return k, k
    frames = np.searchsorted(index.pts, sorted(kept))
    if not np.array_equal(frames, np.arange(k, k + len(kept))):  # a hole: not a clean clip
        return k, k
    return k, k + len(kept)


def _reencode(src: Path, info: VideoInfo, index: PacketIndex, scene: Scene, tmp: Path) -> None:
    a, b = scene
    size = (info.height // 2 * 2, info.width // 2 * 2)  # yuv420p needs even sides
    end = index.seconds(b) if b < len(index.pts) else None
    frames = read_frames(src, size=size, start=index.seconds(a), end=end)
    write_video(tmp, frames, info.fps)
