"""The synthetic corpus: deterministic, and its ground truth agrees with what was written."""

from __future__ import annotations

import json
from pathlib import Path

from svd.media.io import probe
from svd.media.synth import make_corpus
from svd.params import SynthParams


def files(root: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(root.iterdir())}


def test_same_seed_same_bytes_other_seed_other_corpus(
    corpus: Path, synth_params: SynthParams, seed: int, tmp_path: Path
) -> None:
    again = make_corpus(synth_params.model_copy(update={"out": tmp_path / "again"}), seed)
    assert files(again) == files(corpus)
    other = make_corpus(synth_params.model_copy(update={"out": tmp_path / "other"}), seed + 1)
    assert files(other)["ground_truth.json"] != files(corpus)["ground_truth.json"]


def test_ground_truth_matches_the_videos(corpus: Path, synth_params: SynthParams) -> None:
    truth = json.loads((corpus / "ground_truth.json").read_text())["videos"]
    assert len(truth) == synth_params.videos
    for name, v in truth.items():
        info = probe(corpus / f"{name}.mp4")
        assert (info.frames, info.fps, info.width, info.height) == (
            v["frames"],
            v["fps"],
            v["width"],
            v["height"],
        )
        segs = v["segments"]
        assert segs[0]["start_frame"] == 0 and segs[-1]["end_frame"] == v["frames"]
        assert [s["start_frame"] for s in segs[1:]] == [s["end_frame"] for s in segs[:-1]] == v["cuts"]
        assert set(v["fades"]) <= set(v["cuts"])
        sidecar = json.loads((corpus / f"{name}.json").read_text())["segments"]
        assert [c["caption"] for c in sidecar] == [s["caption"] for s in segs]
        assert [round(c["start_s"] * v["fps"]) for c in sidecar] == [s["start_frame"] for s in segs]


def test_corpus_covers_every_case_far_from_the_text_threshold(corpus: Path) -> None:
    """Text areas are either clearly under or clearly over 7%, and every motion kind, both text
    sizes and at least one fade occur, so the curation tests below test something."""
    truth = json.loads((corpus / "ground_truth.json").read_text())["videos"].values()
    segs = [s for v in truth for s in v["segments"]]
    assert {s["motion"] for s in segs} == {"static", "slow", "fast"}
    assert all(s["text_area"] == 0 or s["text_area"] <= 0.03 or s["text_area"] >= 0.12 for s in segs)
    assert any(0 < s["text_area"] <= 0.03 for s in segs) and any(s["text_area"] >= 0.12 for s in segs)
    assert sum(len(v["fades"]) for v in truth) >= 1
    speeds = {s["motion"]: s["speed_px_per_frame"] for s in segs}
    assert speeds["static"] == 0 < speeds["slow"] < speeds["fast"]
    for s in segs:  # every moving shape moves at exactly the segment's speed
        for shape in s["shapes"]:
            assert abs((shape["vx"] ** 2 + shape["vy"] ** 2) ** 0.5 - s["speed_px_per_frame"]) < 1e-9
