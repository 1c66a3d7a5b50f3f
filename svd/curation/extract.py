"""Clips cut from a source, frame-exact: by copying packets where possible (paper Sec. 3.1), else by a
lossless re-encode of exactly the scene.

A copied clip must start on a keyframe to decode on its own, but a scene rarely does (a GOP of real
footage is seconds long). So the copy starts at the keyframe at or before the scene start, and the
frames before the scene get negative times: the mp4 muxer then writes an edit list that starts the
presentation at the scene's first frame, and the demuxer hands the lead-in packets to the decoder
flagged discard, to be decoded as references and never shown. Every FFmpeg-based reader (PyAV,
OpenCV, torchvision, the ffmpeg CLI) and the browsers honour edit lists; a reader that ignores them
would show those few lead-in frames. The copy costs no decoding and keeps the source's bitrate, where
a lossless re-encode costs several times the decode and stores several times the bytes.

Packets are copied in decode order up to the first one whose presentation time is at or past the
scene end; B-frames shown before that point but decoded after it are dropped with it, which costs at
most a few frames at the tail but keeps every copied frame decodable.

When that leaves less than the minimum clip length, or the codec cannot go into mp4 (VP8), the exact
scene is re-encoded instead, losslessly (io.encode_lossless), and the row says reencoded=True. Either
way the clip decodes to exactly end_frame - start_frame frames equal to the source's frames
start_frame .. end_frame - 1, with the source's SAR, rotation and frame times, and the same scene
gives the same bytes on every run. Clips carry the video stream only, as mp4 bytes in memory (they go
into shards, not files).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import av
import numpy as np

from svd.media.io import BITEXACT, VideoError, VideoInfo, encode_lossless, video_stream, why

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacketIndex:
    """Frame i of the video (presentation order) has pts[i]; frames in `keyframes` start a GOP."""

    pts: np.ndarray  # int64, sorted, in time_base units
    keyframes: np.ndarray  # sorted frame indices
    time_base: Fraction
    start: int  # the stream's start_time: time 0 of io.read_frames
    seek_ts: np.ndarray  # int64, what seeks to each frame's packet, in the container's seek clock

    def seconds(self, frame: int) -> float:
        if frame >= len(self.pts):  # one past the end: the last frame lasts as long as the one before
            step = self.pts[-1] - self.pts[-2] if len(self.pts) > 1 else 0
            return float((self.pts[-1] + step - self.start) * self.time_base)
        return float((self.pts[frame] - self.start) * self.time_base)

    @cached_property
    def frame_of(self) -> dict[int, int]:
        """Frame index by pts: frames are counted by their pts, so a frame the decoder drops shifts
        no later one."""
        return {int(t): i for i, t in enumerate(self.pts)}

    def key_before(self, frame: int) -> int:
        """The last keyframe at or before `frame` (frame 0 when the first packet is not flagged)."""
        i = int(np.searchsorted(self.keyframes, frame, side="right"))
        return int(self.keyframes[i - 1]) if i else 0

    def seek_point(self, frame: int) -> int:
        """The timestamp to seek to for decoding `frame`: that of its keyframe's packet."""
        return int(self.seek_ts[self.key_before(frame)])


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
            s = video_stream(c)
            # MPEG-TS and MPEG-PS seek by decode time: a keyframe sought there by its pts, a frame
            # later than its dts under B-frames, lands past it. MP4, Matroska and the rest seek by
            # pts, where a keyframe's dts would land a whole GOP early.
            by_dts = c.format.name in ("mpegts", "mpeg")
            pts, seek, key = [], [], []
            for pkt in c.demux(s):
                if pkt.size == 0 or pkt.is_discard:  # behind an edit list: decoded, never shown
                    continue
                if pkt.pts is None:
                    raise VideoError(f"{path}: packet without pts, cannot clip by stream copy")
                pts.append(pkt.pts)
                seek.append(pkt.dts if by_dts and pkt.dts is not None else pkt.pts)
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
        np.asarray(pts, np.int64)[order],
        np.flatnonzero(np.asarray(key)[order]),
        Fraction(tb),
        start,
        np.asarray(seek, np.int64)[order],
    )


def extract_clip(
    src: str | Path, info: VideoInfo, index: PacketIndex, scene: tuple[int, int], min_frames: int
) -> Clip:
    """The clip of `scene` = [a, b) source frames: a stream copy starting at frame a, or the exact scene
    re-encoded losslessly when the copy would keep fewer than `min_frames` frames."""
    src, (a, b) = Path(src), scene
    try:
        data, end = _remux(src, info, index, a, b)
        if end - a >= min_frames:
            return Clip(data, a, end, False)
    except (av.FFmpegError, ValueError) as e:  # ValueError: a codec mp4 cannot hold (VP8, Theora)
        log.info("%s: stream copy of frames %d-%d failed (%s), re-encoding", src, a, b, why(e))
    return Clip(_reencode(src, info, index, a, b), a, b, True)


def _remux(src: Path, info: VideoInfo, index: PacketIndex, a: int, b: int) -> tuple[bytes, int]:
    """(mp4 bytes, exclusive end frame) of the packets from the keyframe before frame a that show frames
    a .. b - 1, with the lead-in before a hidden by the edit list; end == a when the shown frames are
    not a gap-free run starting at a."""
    key_pts, start_pts = int(index.pts[index.key_before(a)]), int(index.pts[a])
    end_pts = int(index.pts[b]) if b < len(index.pts) else None
    shown: list[int] = []
    buf = io.BytesIO()
    with av.open(str(src)) as inp, av.open(buf, "w", format="mp4", options=BITEXACT) as outc:
        s = video_stream(inp)
        o = outc.add_stream_from_template(s)
        o.sample_aspect_ratio = info.sar  # the pasp box: a container SAR the bitstream may not carry
        if info.rotation:  # the display matrix, whether or not the template copied it
            o.set_display_rotation(info.rotation)
        inp.seek(index.seek_point(a), stream=s)  # lands at or before the keyframe at key_pts
        started = False
        for pkt in inp.demux(s):
            if pkt.size == 0 or pkt.pts is None:
                continue
            if not started:
                if pkt.pts != key_pts or not pkt.is_keyframe:
                    continue
                started = True
            if pkt.pts < key_pts:  # open-GOP leading frames refer to the previous GOP
                continue
            if end_pts is not None and pkt.pts >= end_pts:
                break
            if pkt.pts >= start_pts:
                shown.append(pkt.pts)
            pkt.pts -= start_pts  # frame a at time 0; the lead-in negative, behind the edit list
            if pkt.dts is not None:
                pkt.dts -= start_pts
            pkt.stream = o
            outc.mux(pkt)
    frames = np.searchsorted(index.pts, sorted(shown))
    if not shown or not np.array_equal(frames, np.arange(a, a + len(shown))):  # a hole: not a clean clip
        return b"", a
    return buf.getvalue(), a + len(shown)


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
            s = video_stream(c)
            s.codec_context.thread_count = 1
            c.seek(index.seek_point(a), stream=s)
            rate = s.average_rate or Fraction(info.fps).limit_denominator(1001)
            data = encode_lossless(scene(c, s), index.time_base, rate, sar=info.sar, rotation=info.rotation)
    except (av.FFmpegError, ValueError) as e:  # ValueError: no frame at all
        raise VideoError(f"{src}: re-encode of frames {a}-{b} failed: {why(e)}") from None
    if taken != b - a:
        raise VideoError(f"{src}: re-encode of frames {a}-{b} decoded {taken} frames, not {b - a}")
    return data
