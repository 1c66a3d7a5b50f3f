"""Every file of the hostile corpus gets the outcome it is written down with, for the stated reason."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from svd.curation.extract import extract_clip, index_packets
from svd.media.hostile import LONG_NAME, Expect, make_hostile_corpus
from svd.media.io import VideoError, iter_decoded, probe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Expect], float]:
    out = tmp_path_factory.mktemp("hostile")
    t = time.perf_counter()
    expect = make_hostile_corpus(out)
    return out, expect, time.perf_counter() - t


def test_corpus_is_cheap_and_complete(corpus: tuple[Path, dict[str, Expect], float]) -> None:
    out, expect, seconds = corpus
    assert seconds < 15
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(expect)
    assert (
        len(LONG_NAME.encode()) == 240
        and (out / "dup" / "plain.mp4").read_bytes() == (out / "plain.mp4").read_bytes()
    )
    assert {e.outcome for e in expect.values()} == {"ok", "failed", "empty"}


def test_each_file_gets_its_outcome(corpus: tuple[Path, dict[str, Expect], float]) -> None:
    out, expect, _ = corpus
    for name, want in expect.items():
        path = out / name
        if want.outcome == "failed" and want.found_by == "probe":
            with pytest.raises(VideoError) as e:
                probe(path)
            assert str(e.value).startswith(f"{path}: ") and want.reason in str(e.value), name
            continue
        whole = want.outcome == "ok" or want.found_by == "curation"  # a readable, long enough video
        info, index = probe(path), index_packets(path)
        min_frames = math.ceil(info.fps - 1e-6)  # 1 s, as curation's default min_clip_seconds
        assert (info.frames >= min_frames) == whole, name
        if whole:  # one scene by construction: the whole video
            clip = extract_clip(path, info, index, (0, info.frames), min_frames)
            assert (
                sum(1 for _ in iter_decoded(clip.data)) == clip.end_frame - clip.start_frame >= min_frames
            ), name


def test_odd_properties_are_read(corpus: tuple[Path, dict[str, Expect], float]) -> None:
    out, _, _ = corpus
    got = {
        n: probe(out / n)
        for n in (
            "4k.mp4",
            "anamorphic.mp4",
            "rotated.mp4",
            "yuv444p10.mp4",
            "vp9.webm",
            "vfr.mp4",
            "cover art.mkv",
        )
    }
    assert (got["4k.mp4"].width, got["4k.mp4"].height) == (3840, 2160)
    assert (got["anamorphic.mp4"].width, got["anamorphic.mp4"].height, got["anamorphic.mp4"].sar) == (
        128,
        96,
        2,
    )
    assert (got["rotated.mp4"].width, got["rotated.mp4"].height, got["rotated.mp4"].rotation) == (48, 64, 90)
    assert got["yuv444p10.mp4"].pix_fmt == "yuv444p10le" and got["vp9.webm"].codec == "vp9"
    assert got["vfr.mp4"].frames == 24 and got["vfr.mp4"].fps != pytest.approx(12)
    assert (got["cover art.mkv"].codec, got["cover art.mkv"].frames) == ("h264", 24)  # not its thumbnail
