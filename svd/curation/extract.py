"""Clips cut from a source, frame-exact: by copying packets where possible (paper Sec. 3.1), else by a
lossless re-encode of exactly the scene.

A clip must start on a keyframe to decode on its own, so a stream copy's start is snapped FORWARD to
the first keyframe at or after the scene start: backward would pull in frames of the previous scene
across the cut. Packets are then copied in decode order up to the first one whose presentation time is
at or past the scene end; B-frames shown before that point but decoded after it are dropped with it,
which costs at most a few frames at the tail but keeps every copied frame decodable.

When snapping leaves less than the minimum clip length (long GOPs, short scenes), or the codec cannot
go into mp4 (VP8), the exact scene is re-encoded instead, losslessly (io.encode_lossless), and the row
says reencoded=True. Either way the clip decodes to exactly end_frame - start_frame frames equal to the
source's frames start_frame .. end_frame - 1, with the source's SAR, rotation and frame times, and the
same scene gives the same bytes on every run. Clips carry the video stream only, as mp4 bytes in memory
(they go into shards, not files).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from svd.media.io import BITEXACT, VideoError, VideoInfo, encode_lossless, why

log = logging.getLogger(__name__)


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

    def key_after(self, frame: int) -> int | None:
        """The first keyframe at or after `frame`, None if there is none."""
        i = int(np.searchsorted(self.keyframes, frame))
        return int(self.keyframes[i]) if i < len(self.keyframes) else None

    def key_before(self, frame: int) -> int:
        """The last keyframe at or before `frame` (frame 0 when the first packet is not flagged)."""
        i = int(np.searchsorted(self.keyframes, frame, side="right"))
        return int(self.keyframes[i - 1]) if i else 0


@dataclass(frozen=True)
class Clip:
    data: bytes  # mp4, video stream only
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
    src: str | Path, info: VideoInfo, index: PacketIndex, scene: tuple[int, int], min_frames: int
) -> Clip:
    """The clip of `scene` = [a, b) source frames: a stream copy from the first keyframe in it, or the
    exact scene re-encoded losslessly when the copy would keep fewer than `min_frames` frames."""
    src, (a, b) = Path(src), scene
    k = index.key_after(a)
    if k is not None and b - k >= min_frames:
        try:
            data, end = _remux(src, info, index, k, b)
            if end - k >= min_frames:
                return Clip(data, k, end, False)
        except (av.FFmpegError, ValueError) as e:  # ValueError: a codec mp4 cannot hold (VP8, Theora)
            log.info("%s: stream copy of frames %d-%d failed (%s), re-encoding", src, k, b, why(e))
    return Clip(_reencode(src, info, index, a, b), a, b, True)


def _remux(src: Path, info: VideoInfo, index: PacketIndex, k: int, b: int) -> tuple[bytes, int]:
    """(mp4 bytes, exclusive end frame) of the packets of frames k .. b - 1 that decode on their own;
    end == k when they are not a gap-free run of frames."""
    start_pts = int(index.pts[k])
    end_pts = int(index.pts[b]) if b < len(index.pts) else None
    kept: list[int] = []
    buf = io.BytesIO()
    with av.open(str(src)) as inp, av.open(buf, "w", format="mp4", options=BITEXACT) as outc:
        s = inp.streams.video[0]
        o = outc.add_stream_from_template(s)
        o.sample_aspect_ratio = info.sar  # the pasp box: a container SAR the bitstream may not carry
        if info.rotation:  # the display matrix, whether or not the template copied it
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
    frames = np.searchsorted(index.pts, sorted(kept))
    if not kept or not np.array_equal(frames, np.arange(k, k + len(kept))):  # a hole: not a clean clip
        return b"", k
    return buf.getvalue(), k + len(kept)


def _reencode(src: Path, info: VideoInfo, index: PacketIndex, a: int, b: int) -> bytes:
    """Decode from the keyframe before `a`, keep frames a .. b - 1 by pts, encode them losslessly."""
    start_pts = int(index.pts[a])
    end_pts = int(index.pts[b]) if b < len(index.pts) else None
    taken = 0

    def scene(c: av.container.InputContainer, s: av.VideoStream) -> Iterator[av.VideoFrame]:
        nonlocal taken
        try:
            for frame in c.decode(s):
                if frame.pts is None:
                    raise VideoError(f"{src}: decoded frame without pts, cannot cut frame-exact")
                if frame.pts < start_pts:
                    continue
                if end_pts is not None and frame.pts >= end_pts:
                    return
                taken += 1
                yield frame
        except av.FFmpegError as e:  # raised inside the encoder's loop, which would blame the encoder
            raise VideoError(f"{src}: cannot decode frames {a}-{b}: {why(e)}") from None

    try:
        with av.open(str(src)) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            c.seek(int(index.pts[index.key_before(a)]), stream=s)
            rate = s.average_rate or Fraction(info.fps).limit_denominator(1001)
            data = encode_lossless(scene(c, s), index.time_base, rate, sar=info.sar, rotation=info.rotation)
    except (av.FFmpegError, ValueError) as e:  # ValueError: no frame at all
        raise VideoError(f"{src}: re-encode of frames {a}-{b} failed: {why(e)}") from None
    if taken != b - a:
        raise VideoError(f"{src}: re-encode of frames {a}-{b} decoded {taken} frames, not {b - a}")
    return data
