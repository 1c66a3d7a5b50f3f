"""The curation engine as a data engine: same bytes every time, a cache that recomputes only what
changed, duplicates and bad sidecars handled (a killed run's resume: tests/integration)."""

from __future__ import annotations

import hashlib
import random
import shutil
import zlib
from pathlib import Path

import pandas as pd
import pytest

from svd.curation import scorers
from svd.curation.curate import curate
from svd.params import CurateParams

ROOT = Path(__file__).resolve().parents[3]


def outputs(out: str | Path) -> dict[str, str]:
    """sha256 of every output file, by path relative to `out`."""
    root = Path(out)
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def three_videos(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three of the synthetic videos with their sidecars: enough to shard, quick to curate."""
    d = tmp_path_factory.mktemp("three") / "src"
    d.mkdir()
    for f in sorted(corpus.glob("*.mp4"))[:3]:
        shutil.copy(f, d / f.name)
        shutil.copy(f.with_suffix(".json"), d / f.with_suffix(".json").name)
    return d


def params(src: Path, root: Path, **kw) -> CurateParams:
    return CurateParams(
        sources=(str(src),), out=str(root / "out"), cache=str(root / "cache"), shard_clips=4, **kw
    )


def test_same_inputs_same_bytes_with_or_without_the_cache(
    synth_table: pd.DataFrame, curate_params: CurateParams, tmp_path: Path
) -> None:
    """A fresh run (own cache) and a cached run give the session run's bytes exactly."""
    fresh = curate_params.model_copy(update={"out": str(tmp_path / "out"), "cache": str(tmp_path / "cache")})
    curate(fresh)
    assert outputs(fresh.out) == outputs(curate_params.out)
    cached = curate_params.model_copy(update={"out": str(tmp_path / "out2")})
    curate(cached)
    assert outputs(cached.out) == outputs(curate_params.out)
    assert len(outputs(curate_params.out)) >= 2  # the table and at least one shard


def test_changing_one_scorer_recomputes_only_that_scorer(
    three_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = params(three_videos, tmp_path)
    base = curate(p)
    calls: dict[str, int] = {}
    for name, cls in scorers.SCORERS.items():
        original = cls.score

        def counted(self, clip, _original=original, _name=name):  # type: ignore[no-untyped-def]
            calls[_name] = calls.get(_name, 0) + 1
            return _original(self, clip)

        monkeypatch.setattr(cls, "score", counted)
    scorers.instance.cache_clear()
    again = curate(p)
    assert calls == {} and again.equals(base)  # everything from the cache
    text = dict(p.scorers["text"].model_dump(), side=256)
    changed = CurateParams.model_validate(p.model_dump() | {"scorers": {"motion": {}, "text": text}})
    table = curate(changed)
    assert set(calls) == {"text"} and calls["text"] == (table["status"] == "ok").sum()
    assert table["motion_score"].equals(base["motion_score"])


def test_duplicates_across_folders_and_a_bad_sidecar(three_videos: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(three_videos, src / "a")
    first = sorted((src / "a").glob("*.mp4"))[0]
    (src / "b").mkdir()
    shutil.copy(first, src / "b" / first.name)  # the same file in a second folder
    (src / "a" / first.with_suffix(".json").name).write_text("{not json")  # and its sidecar broken
    t = curate(
        CurateParams(
            sources=(str(src / "a"), str(src / "b")), out=str(tmp_path / "out"), cache=str(tmp_path / "c")
        )
    )
    dup = t[t["status"] == "duplicate"]
    assert dup["video"].tolist() == [str(src / "b" / first.name)]
    assert str(src / "a" / first.name) in dup["error"].iloc[0]
    own = t[(t["video"] == str(first)) & (t["status"] == "ok")]
    assert len(own) >= 1 and (own["caption_source"] == "none").all()
    assert own["warning"].str.contains(first.with_suffix(".json").name).all()
    assert t["clip"].dropna().is_unique


def test_a_filter_change_reads_no_video(three_videos: Path, tmp_path: Path) -> None:
    """Subsets come from the table alone: with sources and shards gone, filtering still works."""
    from svd.curation.filter import make_subsets
    from svd.params import FilterParams, Rule

    p = params(three_videos, tmp_path)
    curate(p)
    shutil.rmtree(Path(p.out) / "shards")
    table = pd.read_parquet(Path(p.out) / "clips.parquet")
    loose = make_subsets(table, FilterParams(lvd_f={"motion_score": Rule(drop_lowest=0.1)}))
    strict = make_subsets(table, FilterParams(lvd_f={"motion_score": Rule(drop_lowest=0.6)}))
    assert len(strict["lvd_f"]) < len(loose["lvd_f"])


def test_a_clip_its_scorer_fails_on_is_a_failed_row_and_its_neighbours_go_on(
    three_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scorers see a video's clips together (a model batches them); one clip that breaks the scorer
    must fail alone, whether the scorer scores one by one or in a batch (aesthetics here)."""
    from svd.curation.scorers.aesthetics import Aesthetics
    from svd.curation.scorers.motion import Motion

    def bad(clip) -> bool:  # type: ignore[no-untyped-def]  # about a third of the clips, by caption
        return zlib.crc32(clip.caption.encode()) % 3 == 0

    def picky(self, clip):  # type: ignore[no-untyped-def]
        if bad(clip):
            raise ValueError("odd clip")
        return {"motion_score": 1.0}

    def batch_fails(self, clips, _whole=Aesthetics.score_many):  # type: ignore[no-untyped-def]
        if any(bad(c) for c in clips):  # one bad clip fails the batch, and itself alone
            raise RuntimeError("bad frames")
        return _whole(self, clips)

    monkeypatch.setattr(Motion, "score", picky)
    monkeypatch.setattr(Aesthetics, "score_many", batch_fails)
    scorers.instance.cache_clear()
    t = curate(params(three_videos, tmp_path, scorers={"motion": {}, "aesthetics": {}}))
    clips = t[t["clip"].notna() & t["start_frame"].notna()]
    failed = clips[clips["status"] == "failed"]
    assert len(failed) and len(failed) < len(clips), failed["error"].tolist()
    assert failed["error"].str.contains("motion scorer on frames .* odd clip", regex=True).all()
    assert failed["error"].str.contains("aesthetics scorer on frames .* bad frames", regex=True).all()
    assert (clips[clips["status"] == "ok"]["motion_score"] == 1.0).all()


def test_tasks_hold_every_video_once_evened_out_by_bytes() -> None:
    from flows.annotate import tasks, videos_per_task

    rng = random.Random(0)
    sizes = {f"s3://b/v{i:03d}.mp4": rng.randint(1, 10**6) for i in range(203)}
    sizes["s3://b/long film.mp4"] = 9 * 10**6
    for per_task in (1, 3, 16, 500):
        grouped = tasks(sizes, per_task)
        assert sorted(v for t in grouped for v in t) == sorted(sizes)
        assert all(0 < len(t) <= per_task for t in grouped) and len(grouped) == -(-len(sizes) // per_task)
        totals = [sum(sizes[v] for v in t) for t in grouped]
        assert totals == sorted(totals, reverse=True)  # the largest task is handed out first
        assert tasks(dict(reversed(sizes.items())), per_task) == grouped
    grouped = tasks(sizes, 16)
    assert grouped[0][0] == "s3://b/long film.mp4"  # the longest work starts first
    evened = [sum(sizes[v] for v in t) for t in grouped[1:]]
    assert max(evened) - min(evened) < 2 * 10**5  # the others within a fifth of one video's bytes
    p = CurateParams()
    assert [videos_per_task(p, n, slots=2) for n in (1, 7, 24, 200, 10**6)] == [1, 1, 3, 16, 16]
    assert videos_per_task(p.model_copy(update={"videos_per_task": 5}), 10**6, slots=2) == 5


def test_the_listing_sizes_files_and_skips_what_is_no_file(tmp_path: Path) -> None:
    """A dangling link or a file deleted while the run lists its sources is no video of the run,
    not an error that stops it; a folder named like a video is none either."""
    from svd.curation.annotate import list_videos

    (tmp_path / "a.mp4").write_bytes(b"x" * 7)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.mov").write_bytes(b"x" * 3)
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")
    assert list_videos([str(tmp_path)]) == {str(tmp_path / "a.mp4"): 7, str(tmp_path / "sub" / "b.mov"): 3}
