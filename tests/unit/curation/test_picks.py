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


def test_the_keeper_holds_each_ended_scenes_picks_and_the_open_scenes_upper_part() -> None:
    """A 3000-frame video cut at 1000 and 1400: of the ended scenes only frames that may be their
    first, middle or last remain; of the open one, frames from its middle on."""
    keeper, frame = Keeper(["first", "middle", "last"], lag=40), np.zeros((10, 10, 3), np.uint8)
    for i in range(3000):
        keeper.add(i, {(10, 10): frame})
        if i % 16 == 0:
            keeper.prune(i, [b for b in (1000, 1400) if b + 20 <= i])  # each found 20 frames late
    kept = set(keeper.done) | set(keeper.open)
    for a, b in ((0, 1000), (1000, 1400)):
        assert {a, a + (b - a) // 2, b - 1} <= kept
        assert len(kept & set(range(a, b))) <= 1 + (picks.SLACK // 2 + 1) + (picks.SLACK + 1)
    open_scene = kept & set(range(1401, 3000))
    assert min(open_scene) >= 1400 + (2960 - 1400) // 2 - picks.SLACK - 16
    assert keeper.bytes == len(kept) * frame.nbytes
    assert set(keeper.take([0, 500, 999, 1200, 2999])) == {0, 500, 999, 1200, 2999}
    assert keeper.bytes == 0 and not keeper.open and not keeper.done


def test_the_keepers_memory_stays_within_its_budget_over_many_scenes() -> None:
    """20000 frames cut every 72, 100-frame budget: the oldest go first, the newest stay."""
    frame = np.zeros((10, 10, 3), np.uint8)
    keeper = Keeper(["first", "middle", "last"], lag=69, budget=100 * frame.nbytes)
    for i in range(20000):
        keeper.add(i, {(10, 10): frame})
        if i % 16 == 0:
            keeper.prune(i, [b for b in range(72, 20000, 72) if b + 60 <= i])
            assert keeper.bytes <= 100 * frame.nbytes + (69 + 16) * frame.nbytes
    assert max(keeper.open) == 19999 and all(k > 19000 for k in keeper.done)
