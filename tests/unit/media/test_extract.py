"""Clips are frame-exact and byte-deterministic, by stream copy and by lossless re-encode alike."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from svd.curation.extract import extract_clip, index_packets
from svd.media.hostile import make_video
from svd.media.io import iter_decoded, probe, to_array

VFR_MS = [sum((40, 120, 60, 100, 80)[j % 5] for j in range(i)) for i in range(24)]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Odd sources with a keyframe every 8 frames, so a scene can be stream-copied from mid-video."""
    d = tmp_path_factory.mktemp("extract")
    make_video(d / "anamorphic.mp4", 24, (96, 64), sar=Fraction(2), gop=8)
    make_video(d / "vfr.mp4", 24, times_ms=VFR_MS, gop=8)
    make_video(d / "yuv444p10.mkv", 24, pix_fmt="yuv444p10le", gop=8)
    make_video(d / "vp8.webm", 24, codec="libvpx", gop=8)
    return d


def decoded(src: Path | bytes, keep: set[int], stop: int) -> tuple[dict[int, np.ndarray], list[float]]:
    """RGB at display size of the frames in `keep`, and the times of frames 0 .. stop - 1."""
    info, sws = probe(src), VideoReformatter()
    frames, times = {}, []
    for d in iter_decoded(src):
        if d.index >= stop:
            break
        if d.index in keep:
            frames[d.index] = to_array(d.frame, None, sws, info.sar)
        times.append(d.time)
    return frames, times


CASES = [  # (source, scene, min_frames, re-encoded)
    ("media:testvideo.mp4", (20, 90), 30, False),  # from keyframe 0, lead-in 0-19 hidden; B-frames
    ("media:testvideo.mp4", (40, 70), 30, True),  # B-frames cost the copy its tail: under 30 frames
    ("media:testvideo.mp4", (40, 70), 25, False),
    ("media:issue-134-rotate.mp4", (50, 120), 24, False),
    ("anamorphic.mp4", (5, 24), 8, False),
    ("anamorphic.mp4", (5, 12), 6, False),
    ("vfr.mp4", (3, 24), 8, False),
    ("vfr.mp4", (11, 14), 3, False),
    ("yuv444p10.mkv", (9, 20), 8, False),
    ("vp8.webm", (0, 24), 8, True),  # mp4 cannot hold VP8: re-encoded although the scene starts on a key
    ("vp8.webm", (3, 14), 8, True),
]


@pytest.mark.parametrize(("name", "scene", "min_frames", "reencoded"), CASES)
def test_clip_is_frame_exact_and_deterministic(
    media: Path,
    made: Path,
    tmp_path: Path,
    name: str,
    scene: tuple[int, int],
    min_frames: int,
    reencoded: bool,
) -> None:
    src = media / name.removeprefix("media:") if name.startswith("media:") else made / name
    info, index = probe(src), index_packets(src)
    clip = extract_clip(src, info, index, scene, min_frames)
    assert clip.reencoded == reencoded and clip.end_frame - clip.start_frame >= min_frames
    assert extract_clip(src, info, index, scene, min_frames).data == clip.data
    assert clip.start_frame == scene[0]
    assert clip.end_frame == scene[1] if reencoded else clip.end_frame <= scene[1]

    got = probe(clip.data)
    assert (got.width, got.height, got.sar, got.rotation) == (
        info.width,
        info.height,
        info.sar,
        info.rotation,
    )
    assert got.pix_fmt == info.pix_fmt
    a, b = clip.start_frame, clip.end_frame
    frames, times = decoded(clip.data, {0, b - a - 1}, b)
    want, want_times = decoded(src, {a, b - 1}, b)
    assert len(times) == b - a
    assert np.array_equal(frames[0], want[a]) and np.array_equal(frames[b - a - 1], want[b - 1])
    # frame times keep the source's spacing (variable frame rate included)
    assert times == pytest.approx([t - want_times[a] for t in want_times[a:]], abs=2e-3)
    # another FFmpeg-based reader honours the edit list too: OpenCV counts no lead-in frame
    (tmp_path / "clip.mp4").write_bytes(clip.data)
    cap, shown = cv2.VideoCapture(str(tmp_path / "clip.mp4")), []
    while (got_frame := cap.read())[0]:
        shown.append(got_frame[1])
    assert len(shown) == b - a


def test_packet_index_finds_keyframes(made: Path) -> None:
    index = index_packets(made / "vfr.mp4")
    assert list(index.keyframes) == [0, 8, 16] and len(index.pts) == 24
    assert (index.key_before(7), index.key_before(8), index.key_before(23)) == (0, 8, 16)
    assert index.seconds(5) == pytest.approx(VFR_MS[5] / 1000)


@pytest.mark.parametrize("name", ["b-frames.mp4", "b-frames.mkv", "b-frames.ts", "mpeg2.ts"])
def test_a_keyframe_sought_is_where_decoding_starts(name: str, tmp_path: Path) -> None:
    """Seeking to a keyframe's seek point lands on that keyframe, in containers that seek by pts
    (landing before it would decode a GOP for nothing) and by dts (MPEG-TS: landing after it would
    lose the GOP), with B-frames, where the two clocks differ."""
    import av

    path = tmp_path / name
    if name.startswith("b-frames"):  # x264's medium preset: B-frames, dts a frame or more behind pts
        with av.open(
            str(path), "w", format={".mp4": "mp4", ".mkv": "matroska", ".ts": "mpegts"}[path.suffix]
        ) as c:
            s = c.add_stream("libx264", rate=12)
            s.width, s.height, s.pix_fmt, s.options = 64, 48, "yuv420p", {"preset": "medium", "g": "8"}
            for img in np.random.default_rng(0).integers(0, 256, (32, 48, 64, 3), dtype=np.uint8):
                c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            c.mux(s.encode(None))
    else:
        make_video(path, 32, codec="mpeg2video", gop=8)
    index = index_packets(path)
    assert len(index.keyframes) >= 3, index.keyframes
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for k in index.keyframes:
            c.seek(index.seek_point(int(k)), stream=s)
            first = next(p for p in c.demux(s) if p.size)
            assert first.pts == index.pts[k] and first.is_keyframe, (name, int(k), first.pts)
