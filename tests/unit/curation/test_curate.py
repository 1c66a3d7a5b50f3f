"""curate() end to end: the synthetic corpus against its ground truth, and the shared real videos."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from svd.curation.checks import check_clips
from svd.curation.filter import make_subsets
from svd.data.shards import read_clips, read_shard
from svd.media.io import probe, read_frames
from svd.params import CurateParams, FilterParams
from svd.storage import read_range


def truth_segment(truth: dict, row: pd.Series) -> dict:
    v = truth[Path(row.video).stem]
    inside = [
        s for s in v["segments"] if s["start_frame"] <= row.start_frame and row.end_frame <= s["end_frame"]
    ]
    assert len(inside) == 1, f"clip {row['clip']} [{row.start_frame}, {row.end_frame}) crosses a cut"
    return inside[0]


@pytest.fixture(scope="module")
def truth(corpus: Path) -> dict:
    return json.loads((corpus / "ground_truth.json").read_text())["videos"]


def test_synthetic_clips_are_ok_and_within_one_scene(synth_table: pd.DataFrame, truth: dict) -> None:
    assert (synth_table["status"] == "ok").all(), synth_table[synth_table["status"] != "ok"]["error"].tolist()
    segments = [truth_segment(truth, r) for _, r in synth_table.iterrows()]
    # nearly every scene long enough for a clip once its transitions are cut off yields one; the
    # sub-second scenes give none and are not merged into a neighbour (truth_segment checks that)
    long = [
        s
        for v in truth.values()
        for s in v["segments"]
        if (s["end_frame"] - s["start_frame"]) / v["fps"] >= 1.5
    ]
    assert len({(s["start_frame"], s["caption"]) for s in segments}) >= 0.9 * len(long)
    assert (synth_table["caption_source"] == "sidecar").all()
    assert [s["caption"] for s in segments] == synth_table["caption"].tolist()


def decode(video: bytes, tmp: Path) -> np.ndarray:
    f = tmp / "clip.mp4"
    f.write_bytes(video)
    return read_frames(f)


def test_clips_are_exact_copies_of_their_frames(
    synth_table: pd.DataFrame, curate_params: CurateParams, tmp_path: Path
) -> None:
    """Frame-exact: the clip decodes to exactly its table row's frames of the source, first to last."""
    for r, video in read_clips(curate_params.out, synth_table.head(8).itertuples()):
        clip = decode(video, tmp_path)
        source = read_frames(r.video)
        assert len(clip) == r.frames == r.end_frame - r.start_frame
        assert np.array_equal(clip[0], source[r.start_frame]) and np.array_equal(
            clip[-1], source[r.end_frame - 1]
        )
    stream_copied = synth_table[~synth_table["reencoded"].astype(bool)]
    assert len(stream_copied) >= 0.9 * len(synth_table)
    assert (stream_copied["start_frame"] % 6 != 0).any()  # copied from mid-GOP (keyframes every 6)


def test_every_still_clip_scores_below_every_moving_clip(synth_table: pd.DataFrame, truth: dict) -> None:
    kind = [truth_segment(truth, r)["motion"] for _, r in synth_table.iterrows()]
    score = synth_table["motion_score"].to_numpy()
    still = score[[k == "static" for k in kind]]
    moving = score[[k != "static" for k in kind]]
    assert len(still) and len(moving)
    assert still.max() < moving.min(), (still.max(), moving.min())
    fast = score[[k == "fast" for k in kind]]
    assert np.median(fast) > np.median(moving[np.isin(moving, fast, invert=True)])


def test_large_text_never_reaches_lvd_f(synth_table: pd.DataFrame, truth: dict) -> None:
    lvd_f = make_subsets(synth_table, FilterParams())["lvd_f"]
    areas = {r["clip"]: truth_segment(truth, r)["text_area"] for _, r in synth_table.iterrows()}
    large = {c for c, a in areas.items() if a > 0.07}
    assert large, "the corpus has no large text overlay to filter"
    assert not large & set(lvd_f["clip"])
    detected = synth_table.set_index("clip")["text_area"]
    assert all(detected[c] > 0.07 for c in large)  # dropped for their text, not by chance


def test_clip_table_indexes_the_shards(synth_table: pd.DataFrame, curate_params: CurateParams) -> None:
    out = Path(curate_params.out)
    on_disk = pd.read_parquet(out / "clips.parquet")
    pd.testing.assert_frame_equal(on_disk, synth_table, check_dtype=False)
    in_shards = [
        (s.name, key, mp4) for s in sorted((out / "shards").iterdir()) for key, mp4, _ in read_shard(str(s))
    ]
    assert [key for _, key, _ in in_shards] == synth_table["clip"].tolist()
    assert [f"shards/{name}" for name, _, _ in in_shards] == synth_table["shard"].tolist()
    # the table's byte ranges fetch each clip alone, as a streaming reader does
    ranges = zip(synth_table["shard"], synth_table["mp4_offset"], synth_table["mp4_bytes"], strict=True)
    assert [read_range(out / s, int(o), int(n)) for s, o, n in ranges] == [mp4 for _, _, mp4 in in_shards]
    assert synth_table["mp4_sha256"].tolist() == [hashlib.sha256(mp4).hexdigest() for _, _, mp4 in in_shards]
    check_clips(synth_table)


def test_real_videos_give_clips_and_a_corrupt_one_a_failed_row(
    real_table: pd.DataFrame, real_dir: Path
) -> None:
    failed = real_table[real_table["status"] == "failed"]
    assert len(failed) == 1
    assert failed["video"].iloc[0] == str(real_dir / "truncated.mp4")
    assert "truncated.mp4" in failed["error"].iloc[0]
    ok = real_table[real_table["status"] == "ok"]
    assert {Path(v).name for v in ok["video"]} >= {"testvideo.mp4", "issue-134-rotate.mp4"}
    # fades.mp4 is fades end to end, holding each picture under half a second: no clean second to clip
    fades = real_table[real_table["video"].str.endswith("fades.mp4")]
    assert fades["status"].tolist() == ["empty"] and "no scene of at least 1.0 s" in fades["error"].iloc[0]
    assert (ok["caption"] == "").all() and (ok["caption_source"] == "none").all()  # no sidecar, no caption
    assert (ok["seconds"] >= 1.0 - 1e-9).all()
    check_clips(real_table)


def test_rotated_source_gives_upright_clips(real_table: pd.DataFrame, real_dir: Path, tmp_path: Path) -> None:
    rows = real_table[
        real_table["video"].str.endswith("issue-134-rotate.mp4") & (real_table["status"] == "ok")
    ]
    assert len(rows)
    out = str(real_dir.parent / "curated")
    for r, video in read_clips(out, rows.itertuples()):
        assert (r.width, r.height) == (544, 1280)
        (tmp_path / "c.mp4").write_bytes(video)
        assert (probe(tmp_path / "c.mp4").width, probe(tmp_path / "c.mp4").height) == (544, 1280)
        first = read_frames(tmp_path / "c.mp4", max_frames=1)[0]
        assert np.array_equal(first, read_frames(r.video, start=r.start_s, max_frames=1)[0])
