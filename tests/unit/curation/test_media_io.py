"""svd.media.io on real files and on videos whose every frame says its own index."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from svd.media.io import VideoError, encode_video, probe, read_at, read_frames, write_video


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
