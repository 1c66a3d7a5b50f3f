"""svd.media.io on real files and on videos whose every frame says its own index."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from svd.media.hostile import make_video
from svd.media.io import (
    VideoError,
    encode_lossless,
    encode_video,
    iter_decoded,
    probe,
    read_at,
    read_frames,
    to_array,
    write_video,
)


def numbered(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frame i is flat grey 8 * i: after lossy coding, round(mean / 8) still gives i back."""
    return np.stack([np.full((h, w, 3), 8 * i, np.uint8) for i in range(n)])


def indices(frames: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / 8) for f in frames]


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("io") / "counted.mp4"
    write_video(path, numbered(30), fps=10)
    return path


def test_write_probe_read_roundtrip(counted: Path) -> None:
    info = probe(counted)
    assert (info.fps, info.frames, info.width, info.height, info.rotation) == (10.0, 30, 48, 32, 0)
    assert info.seconds == pytest.approx(3.0)
    assert indices(read_frames(counted)) == list(range(30))


def test_resampling_takes_the_nearest_frame(counted: Path) -> None:
    # 10 fps -> 3 fps and 30 fps: output k at k / fps s is source frame round(10 k / fps), no ties
    assert indices(read_frames(counted, fps=3)) == [round(10 * k / 3) for k in range(9)]
    assert indices(read_frames(counted, fps=30)) == [min(round(k / 3), 29) for k in range(90)]


def test_time_window_and_max_frames(counted: Path) -> None:
    assert indices(read_frames(counted, start=1.0, end=1.5)) == [10, 11, 12, 13, 14]
    assert indices(read_frames(counted, start=2.0, max_frames=3)) == [20, 21, 22]
    assert indices(read_frames(counted, fps=2, start=0.5, end=2.0)) == [5, 10, 15]


def test_size_scales_short_side_and_crops_centre(tmp_path: Path) -> None:
    img = np.zeros((4, 40, 80, 3), np.uint8)
    img[:, :, :20] = 255  # left quarter white: cropped away when 80x40 becomes a 40x40 square
    path = tmp_path / "wide.mp4"
    write_video(path, img, fps=8)
    out = read_frames(path, size=(20, 20))
    assert out.shape == (4, 20, 20, 3)
    assert out[:, :, 2:].mean() < 20  # only the centre, which is black, survives


def test_read_at_gives_each_time_its_own_size(counted: Path) -> None:
    a, b, c = read_at(counted, [2.0, 0.0, 2.96], [(16, 24), None, (8, 12)])
    assert a.shape == (16, 24, 3) and b.shape == (32, 48, 3) and c.shape == (8, 12, 3)
    assert indices(np.stack([b])) == [0] and round(a.mean() / 8) == 20 and round(c.mean() / 8) == 29


def test_encode_video_in_memory_decodes(tmp_path: Path) -> None:
    data = encode_video(numbered(6), fps=6)
    (tmp_path / "m.mp4").write_bytes(data)
    assert indices(read_frames(tmp_path / "m.mp4")) == list(range(6))


def test_rotation_metadata_is_applied(media: Path) -> None:
    path = media / "issue-134-rotate.mp4"
    info = probe(path)
    assert info.rotation == -90 and (info.width, info.height) == (544, 1280)
    with av.open(str(path)) as c:
        raw = next(c.decode(video=0)).to_ndarray(format="rgb24")  # as stored: 1280 wide
    upright = read_frames(path, max_frames=1)[0]
    assert raw.shape == (544, 1280, 3) and upright.shape == (1280, 544, 3)
    # -90 is counter-clockwise by -90: the player turns the stored picture a quarter clockwise
    assert np.array_equal(upright, np.rot90(raw, k=-1))
    assert read_frames(path, size=(64, 32), max_frames=2).shape == (2, 64, 32, 3)


def test_unreadable_input_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    for call in (probe, read_frames):
        with pytest.raises(VideoError, match=re.escape(str(junk))):
            call(junk)
    with pytest.raises(VideoError, match=r"missing\.mp4"):
        probe(tmp_path / "missing.mp4")


def test_encoder_rejects_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 48, 3), np.uint8), fps=5)
    with pytest.raises(ValueError, match="uint8"):
        encode_video(np.zeros((2, 32, 48, 3), np.float32), fps=5)
    assert not list(tmp_path.iterdir())  # no half-written file left behind


def test_encoding_is_deterministic_and_carries_no_version_or_time() -> None:
    a, b = encode_video(numbered(8), fps=8, gop=4), encode_video(numbered(8), fps=8, gop=4)
    assert a == b and b"Lavf" not in a  # the muxer's bitexact mode: no library version string


def test_bytes_in_memory_read_like_a_file(counted: Path) -> None:
    data = counted.read_bytes()
    info = probe(data)
    assert info.path is None and (info.frames, info.width, info.pix_fmt, info.codec) == (
        30,
        48,
        "yuv420p",
        "h264",
    )
    assert np.array_equal(read_frames(data), read_frames(counted))


def test_threads_do_not_change_frames(counted: Path) -> None:
    assert np.array_equal(read_frames(counted, threads=0), read_frames(counted, threads=1))


def test_iter_decoded_and_to_array_match_read_frames(counted: Path) -> None:
    sws = VideoReformatter()
    got = [(d.index, d.time, d.key, to_array(d.frame, (16, 16), sws)) for d in iter_decoded(counted)]
    assert [g[0] for g in got] == list(range(30)) and [g[1] for g in got] == pytest.approx(
        [i / 10 for i in range(30)]
    )
    assert got[0][2] and np.array_equal(np.stack([g[3] for g in got]), read_frames(counted, size=(16, 16)))


def test_non_square_pixels_are_shown_stretched(tmp_path: Path) -> None:
    path = tmp_path / "anamorphic.mp4"
    make_video(path, 6, (96, 64), sar=Fraction(2))  # stored 64 wide, shown 128 wide
    info = probe(path)
    assert (info.width, info.height, info.sar) == (128, 96, 2)
    assert read_frames(path).shape == (6, 96, 128, 3)
    assert read_frames(path, size=(48, 48)).shape == (
        6,
        48,
        48,
        3,
    )  # crops the display, not the stored, frame
    with av.open(str(path)) as c:
        raw = next(c.decode(video=0)).to_ndarray(format="rgb24")
    # the square block of the pattern is 16x16 stored: 32 wide by 16 high as shown
    shown = read_frames(path, max_frames=1)[0]
    assert np.abs(shown[:, ::2].astype(int) - raw).mean() < 3


def test_variable_frame_rate_times_come_from_pts(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    times = [0, 40, 160, 220, 320, 400, 520, 560]  # ms
    make_video(path, len(times), times_ms=times)
    info = probe(path)
    assert info.frames == 8 and info.fps == pytest.approx(
        8 / 0.6, rel=0.1
    )  # average: 8 frames, 0.56 s + last
    assert [d.time for d in iter_decoded(path)] == pytest.approx([t / 1000 for t in times])
    assert len(read_frames(path)) == 8 and len(read_frames(path, start=0.15, end=0.4)) == 3


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "suffix"),
    [("libx264", "yuv420p", ".mp4"), ("libx264", "yuv444p10le", ".mp4"), ("libvpx-vp9", "gbrp", ".webm")],
)
def test_lossless_encoding_decodes_to_the_same_frames(
    tmp_path: Path, codec: str, pix_fmt: str, suffix: str
) -> None:
    """gbrp is not an x264 format: it goes through rgb24 and libx264rgb, which decodes as gbrp again."""
    src = tmp_path / f"src{suffix}"
    times = [0, 40, 160, 220, 320, 400]
    make_video(src, 6, pix_fmt=pix_fmt, codec=codec, sar=Fraction(4, 3), rotation=90, times_ms=times)
    info = probe(src)
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        frames, tb, rate = list(c.decode(s)), s.time_base, s.average_rate
    assert tb is not None and rate is not None
    data = encode_lossless(frames[1:], tb, rate, sar=info.sar, rotation=info.rotation)
    assert encode_lossless(frames[1:], tb, rate, sar=info.sar, rotation=info.rotation) == data
    got = probe(data)
    assert (got.sar, got.rotation) == (info.sar, 90) and (got.width, got.height) == (info.width, info.height)
    assert (got.pix_fmt, got.codec) == (pix_fmt, "h264")
    assert np.array_equal(read_frames(data), read_frames(src)[1:])
    assert [d.time for d in iter_decoded(data)] == pytest.approx(
        [(t - 40) / 1000 for t in times[1:]], abs=1e-3
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"\x00\x00\x00\x18ftypisom" + bytes(12) + b"\x00\x00\x10\x00mdat" + bytes(100), "no moov atom"),
        (
            b"\x00\x00\x00\x18ftypisom" + bytes(12) + b"\x00\x00\x10\x00moov" + bytes(100),
            "moov box runs past",
        ),
        (np.random.default_rng(0).bytes(5000), "not a video container"),
    ],
    ids=["empty", "moov-missing", "moov-cut", "random"],
)
def test_unreadable_bytes_say_why(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(data)
    with pytest.raises(VideoError, match=f"^{re.escape(str(path))}: .*{re.escape(reason)}"):
        probe(path)


def test_a_cut_copy_of_a_real_video_says_truncated(media: Path, tmp_path: Path) -> None:
    data = (media / "testvideo.mp4").read_bytes()  # moov at the end
    for keep in (0.5, 0.9999):
        (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(VideoError, match="truncated"):
            probe(tmp_path / "cut.mp4")
    for f in sorted(media.iterdir()):  # and no whole file is taken for a cut one
        probe(f)
