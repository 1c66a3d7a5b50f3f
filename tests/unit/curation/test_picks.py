"""Picked frames come from the decode pass that finds the cuts, not from a second decode: what a user
would check is that this changes no score (a pick is the same array whether the pass kept it or a
seek fetched it) and that on long-GOP footage nothing is decoded twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from svd.curation import picks
from svd.curation.annotate import annotate_video
from svd.curation.picks import Keeper
from svd.params import CurateParams

SCORERS = {"text": {}, "fingerprint": {}}


def annotate(video: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, keep: bool) -> tuple[list, list]:
    """The rows of one video (fresh cache) and the frames the seeking decode was asked for; with
    keep=False the pass's keeper hands nothing over, so every pick is fetched by seeking."""
    read, asked = picks.read, []

    def counting(path, viewer, index, frames):  # type: ignore[no-untyped-def]
        asked.extend(frames)
        return read(path, viewer, index, frames)

    monkeypatch.setattr(picks, "read", counting)
    if not keep:
        monkeypatch.setattr(picks.Keeper, "take", lambda self, frames: {})
    p = CurateParams(
        sources=(str(video.parent),), out=str(tmp / "out"), cache=str(tmp / "cache"), scorers=SCORERS
    )
    rows = annotate_video(str(video), p).rows
    assert all(r["status"] == "ok" for r in rows), rows
    return rows, asked


@pytest.mark.parametrize("name", ["counter.mp4", "issue-134-rotate.mp4"])
def test_picks_from_the_pass_equal_picks_by_seeking(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """counter.mp4 is 1080p in one GOP; the rotated film clip is 544x1280 turned a quarter. Every
    pick comes from the pass, and the text areas and fingerprints are the same to the bit as when
    every pick is fetched by seeking."""
    kept, asked = annotate(media / name, tmp_path / "kept", monkeypatch, keep=True)
    assert asked == []
    sought, asked = annotate(media / name, tmp_path / "sought", monkeypatch, keep=False)
    assert len(asked) == len(set(asked)) >= 2 * len(sought)  # at least the first and last of each clip
    assert [(r["clip"], r["text_area"], r["fingerprint"]) for r in kept] == [
        (r["clip"], r["text_area"], r["fingerprint"]) for r in sought
    ]


def test_the_keeper_holds_the_open_scenes_upper_part_and_each_closed_scenes_picks() -> None:
    """A 3000-frame video cut at 1000 and 1400: of the closed scenes only frames near their first,
    middle and last remain; of the open one, frames from its middle on; all within the budget."""
    keeper, frame = Keeper(["first", "middle", "last"], lag=40), np.zeros((10, 10, 3), np.uint8)
    for i in range(3000):
        keeper.add(i, {(10, 10): frame})
        if i % 16 == 0:
            keeper.prune(i, [b for b in (1000, 1400) if b + 40 <= i])
    kept = set(keeper.kept)
    for a, b in ((0, 1000), (1000, 1400)):
        assert {a, a + (b - a) // 2, b - 1} <= kept
        assert len(kept & set(range(a, b))) <= 3 * (2 * picks.SLACK + 1)
    open_scene = kept & set(range(1400, 3000))
    assert (
        min(open_scene - set(range(1400, 1400 + picks.SLACK + 1)))
        >= 1400 + (2960 - 1400) // 2 - picks.SLACK - 16
    )
    assert keeper.bytes == len(kept) * frame.nbytes

    small = Keeper(["middle"], lag=40, budget=100 * frame.nbytes)
    for i in range(3000):
        small.add(i, {(10, 10): frame})
        if i % 16 == 0:
            small.prune(i, [])
    assert small.bytes <= (100 + 16) * frame.nbytes
    assert max(small.kept) == 2999  # the newest stay: the open scene's latest picks are likeliest
