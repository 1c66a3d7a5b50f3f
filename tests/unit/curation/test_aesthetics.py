"""The CLIP scorer (aesthetics and caption similarity) with a tiny CLIP saved in transformers' format
and a tiny aesthetic MLP in safetensors: the loading code is the one real weights go through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from svd.curation import cache
from svd.curation.curate import curate
from svd.curation.models import LOADS
from svd.curation.scorers import aesthetics
from svd.curation.scorers.aesthetics import Aesthetics, AestheticsParams
from svd.curation.scorers.base import ClipFrames
from svd.curation.tiny_models import save_random_clip
from svd.media.synth import make_corpus
from svd.params import CurateParams, SynthParams

PROJECTION = 16


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(CLIP folder, aesthetic head file), as a user points params.yaml at them."""
    return save_random_clip(tmp_path_factory.mktemp("clip"), PROJECTION)


def frames(seed: int, n: int = 3) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, (n, 72, 128, 3), dtype=np.uint8))


def test_scores_equal_clips_own_forward_pass(tiny_clip: tuple[str, str]) -> None:
    """Checked against CLIPModel.forward (its normalised embeddings and logit scale), not the
    scorer's own helpers; the head is LAION's layer layout loaded from safetensors."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    model_dir, head_file = tiny_clip
    scorer = Aesthetics(AestheticsParams(model=model_dir, head=head_file))
    picks = frames(0)
    got = scorer.score(ClipFrames(picks, 12.0, 128, 72, "a red square on grey"))

    model = CLIPModel.from_pretrained(model_dir).eval()
    pixels = CLIPImageProcessor.from_pretrained(model_dir)(images=picks, return_tensors="pt").pixel_values
    ids = AutoTokenizer.from_pretrained(model_dir)(["a red square on grey"], return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels)
        similarity = (out.logits_per_image / model.logit_scale.exp()).mean()
        w = load_file(head_file)
        x = out.image_embeds
        for i in (0, 2, 4, 6, 7):
            x = x @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
    assert got["caption_similarity"] == pytest.approx(float(similarity), abs=1e-5)
    assert got["aesthetic_score"] == pytest.approx(float(x.mean()), abs=1e-5)


def test_the_caption_matters_and_no_caption_is_not_scored(tiny_clip: tuple[str, str]) -> None:
    model_dir, head_file = tiny_clip
    scorer = Aesthetics(AestheticsParams(model=model_dir, head=head_file))
    picks = frames(1)
    a = scorer.score(ClipFrames(picks, 12.0, 128, 72, "a dog"))
    b = scorer.score(ClipFrames(picks, 12.0, 128, 72, "white text on a black title card"))
    none = scorer.score(ClipFrames(picks, 12.0, 128, 72, ""))
    assert a["caption_similarity"] != b["caption_similarity"]
    assert a["aesthetic_score"] == b["aesthetic_score"] == none["aesthetic_score"]
    assert none["caption_similarity"] is None
    assert -1 <= a["caption_similarity"] <= 1  # type: ignore[operator]


def test_without_weights_nothing_is_invented(tiny_clip: tuple[str, str]) -> None:
    model_dir, _ = tiny_clip
    none = Aesthetics(AestheticsParams())
    assert none.score(ClipFrames(frames(2), 12.0, 128, 72, "a dog")) == {
        "aesthetic_score": None,
        "caption_similarity": None,
    }
    assert not none.frames().caption  # its (empty) scores are not cached per caption
    no_head = Aesthetics(AestheticsParams(model=model_dir))
    got = no_head.score(ClipFrames(frames(2), 12.0, 128, 72, "a dog"))
    assert got["aesthetic_score"] is None and got["caption_similarity"] is not None


def test_a_head_for_another_clip_fails_naming_the_file(tiny_clip: tuple[str, str], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model_dir, _ = tiny_clip
    wrong = tmp_path / "vit-b32-head.safetensors"
    save_file({"layers.0.weight": torch.zeros(1024, 512), "layers.0.bias": torch.zeros(1024)}, wrong)
    with pytest.raises(ValueError, match=rf"{wrong}.*16-d"):
        Aesthetics(AestheticsParams(model=model_dir, head=str(wrong))).score(
            ClipFrames(frames(3), 12.0, 128, 72, "")
        )


def test_curation_scores_every_clip_loads_clip_once_and_rescores_only_it_on_new_captions(
    tiny_clip: tuple[str, str], tmp_path: Path
) -> None:
    model_dir, shared_head = tiny_clip
    head_file = str(shutil.copy(shared_head, tmp_path / "head.safetensors"))  # this test replaces it
    raw = make_corpus(SynthParams(out=tmp_path / "raw", videos=2, segments=(2, 2), text_fraction=0.0), seed=3)
    p = CurateParams(
        sources=(str(raw),),
        out=str(tmp_path / "out"),
        cache=str(tmp_path / "cache"),
        scorers={"motion": {}, "aesthetics": {"model": model_dir, "head": head_file}},
    )
    aesthetics.load.cache_clear()  # as a fresh worker process: the tests above loaded this CLIP
    loads = LOADS["aesthetics"]
    table = curate(p)
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 4 and ok["aesthetic_score"].notna().all()
    assert (ok["caption_similarity"].notna() == (ok["caption"] != "")).all() and (ok["caption"] != "").any()
    assert LOADS["aesthetics"] - loads == 1  # once for the process, not per video

    # a new caption for one video: its similarity changes, nothing else of the table does
    def entries(scorer: str) -> list[Path]:
        return sorted((Path(p.cache) / "scores" / scorer).glob("*.json"))

    motion, scored = entries("motion"), entries("aesthetics")
    sidecar = next(f for f in sorted(raw.glob("*.json")) if f.with_suffix(".mp4").exists())
    doc = json.loads(sidecar.read_text())
    for s in doc["segments"]:
        s["caption"] = "an entirely different caption"
    sidecar.write_text(json.dumps(doc))
    shutil.rmtree(p.out)
    again = curate(p)
    video = str(sidecar.with_suffix(".mp4"))
    changed = again["video"] == video
    assert not again.loc[changed, "caption_similarity"].equals(table.loc[changed, "caption_similarity"])
    same = [c for c in table.columns if c not in ("caption", "caption_similarity")]
    assert again[same].equals(table[same])
    assert again.loc[~changed, "caption_similarity"].equals(table.loc[~changed, "caption_similarity"])
    assert entries("motion") == motion and len(entries("aesthetics")) == len(scored) + 1  # cache keys
    # new weights under the same file name: the aesthetic scores are computed again, not read back
    _, other_head = save_random_clip(tmp_path / "other", PROJECTION, seed=1)
    shutil.copy(other_head, head_file)
    aesthetics.aesthetic_head.cache_clear()  # as in a new run's processes
    cache._digest.cache_clear()
    shutil.rmtree(p.out)
    rescored = curate(p)
    assert not rescored["aesthetic_score"].equals(again["aesthetic_score"])
    assert rescored["motion_score"].equals(again["motion_score"]) and entries("motion") == motion


def test_a_videos_clips_batch_to_the_scores_they_get_alone(tiny_clip: tuple[str, str]) -> None:
    model_dir, head_file = tiny_clip
    clips = [
        ClipFrames(frames(10 + i, n=3), 12.0, 128, 72, ["a dog", "", "a dog", "rain"][i]) for i in range(4)
    ]
    alone = [Aesthetics(AestheticsParams(model=model_dir, head=head_file)).score(c) for c in clips]
    for batch in (2, 64):  # frames per forward: 12 frames in 6 passes, or in one
        together = Aesthetics(AestheticsParams(model=model_dir, head=head_file, batch=batch)).score_many(
            clips
        )
        for a, b in zip(alone, together, strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert (a[k] is None) == (b[k] is None) and (a[k] is None or abs(a[k] - b[k]) < 1e-5), (
                    k,
                    a,
                    b,
                )


def test_device_auto_takes_cuda_only_where_there_is_one() -> None:
    from svd.curation.scorers.base import torch_device

    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            torch_device("cuda")


def test_the_cache_keys_on_what_changes_the_numbers(tiny_clip: tuple[str, str]) -> None:
    from svd.curation import cache
    from svd.params import CutParams

    model_dir, _ = tiny_clip
    bare = AestheticsParams()
    assert bare.key() == AestheticsParams(device="auto", batch=8).key()  # no model: nothing runs
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert AestheticsParams(model=model_dir, device="auto").key()["device"] == here  # as it ran
    p = CurateParams()
    off = p.model_copy(update={"cuts": CutParams(learned_threshold=0.7, learned_device="auto")})
    assert cache.clips_entry(off, "abc") == cache.clips_entry(p, "abc")  # TransNetV2 off: its settings idle
    on = p.model_copy(update={"cuts": CutParams(learned=True)})
    assert cache.clips_entry(on, "abc") != cache.clips_entry(p, "abc")
