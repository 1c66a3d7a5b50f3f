"""Scene transitions: what a user checks first (close cuts kept, fades and dissolves cut out, camera
motion left alone), scored against the synthetic corpus and the shared real videos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from svd.curation.cutscore import MEDIA_TRUTH, Score, load_truth, score, score_videos
from svd.curation.scenes import SceneDetector, Transition, detect, scenes
from svd.media.io import write_video
from svd.params import CutParams

H, W = 96, 128


def texture(seed: int, width: int = W, cell: int = 8) -> np.ndarray:
    """Smooth random colour field with some fine grain, like defocused background plus detail."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, width, 3), np.float32)
    for c, weight in ((cell, 1.0), (2, 0.3)):
        noise = rng.normal(size=(H // c + 1, width // c + 1, 3)).astype(np.float32)
        img += weight * cv2.resize(noise, (width, H), interpolation=cv2.INTER_CUBIC)
    return ((img - img.min()) / np.ptp(img) * 215 + 20).astype(np.float32)


def shot(seed: int, frames: int, start: int = 0, speed: float = 2.0) -> np.ndarray:
    """Frames [start, start + frames) of a scene: a textured background crossed by a square."""
    bg = texture(seed)
    colour = tuple(float(v) for v in np.random.default_rng(seed + 1).uniform(0, 255, 3))
    out = np.empty((frames, H, W, 3), np.float32)
    for k, t in enumerate(range(start, start + frames)):
        img = bg.copy()
        x = int(10 + speed * t) % (W - 30)
        cv2.rectangle(img, (x, 30), (x + 24, 60), colour, -1)
        out[k] = img
    return out


def save(path: Path, frames: np.ndarray, fps: float) -> Path:
    write_video(path, np.clip(frames, 0, 255).round().astype(np.uint8), fps)
    return path


@pytest.mark.parametrize("fps", [12, 5])
def test_two_hard_cuts_a_third_of_a_second_apart_are_both_found(tmp_path: Path, fps: int) -> None:
    a, b, c = 2 * fps, max(1, round(0.3 * fps)), 2 * fps
    video = np.concatenate([shot(1, a), shot(2, b), shot(3, c)])
    found, n = detect(save(tmp_path / "cuts.mp4", video, fps), CutParams())
    assert found == [Transition(a, a, "cut"), Transition(a + b, a + b, "cut")]
    assert scenes(found, n) == [(0, a), (a, a + b), (a + b, a + b + c)]


def test_dissolve_and_fade_are_cut_out_of_every_scene(tmp_path: Path) -> None:
    """A dissolve (both scenes moving) and a fade through black: each reported with its kind, no scene
    keeps a blended frame, and no scene loses more than a couple of clean ones."""
    fps, n, d, f = 12, 30, 8, 12  # scene frames, dissolve frames, fade frames
    s1, s2 = n, 2 * n  # scene boundaries
    a, b, c = shot(1, n + d // 2), shot(2, n + d // 2, start=-d // 2), shot(3, n)
    video = np.concatenate([a[:n], b[d // 2 :], c])
    for k in range(d):  # cross-fade around s1, a_k strictly between 0 and 1
        w = (k + 1) / (d + 1)
        video[s1 - d // 2 + k] = (1 - w) * a[n - d // 2 + k] + w * b[k]
    gain = np.r_[np.arange(f // 2 - 1, -1, -1), np.arange(f // 2)] / (f // 2)  # down to black and up
    video[s2 - f // 2 : s2 + f // 2] *= gain[:, None, None, None]
    found, frames = detect(save(tmp_path / "gradual.mp4", video, fps), CutParams())
    truth = [Transition(s1 - d // 2, s1 + d // 2, "dissolve"), Transition(s2 - f // 2, s2 + f // 2, "fade")]
    assert [t.kind for t in found] == ["dissolve", "fade"]
    for t, true in zip(found, truth, strict=True):
        assert true.start - 2 <= t.start <= true.start and true.end <= t.end <= true.end + 2, (t, true)
    blended = {k for t in truth for k in range(t.start, t.end)}
    assert not any(k in blended for s in scenes(found, frames) for k in range(*s))


def test_pans_zooms_and_fast_motion_are_no_transition(tmp_path: Path) -> None:
    fps, n = 12, 48
    wide = texture(7, width=10 * W)
    smooth = texture(8, width=10 * W, cell=32)

    def pan(canvas: np.ndarray, speed: float) -> np.ndarray:
        return np.stack([canvas[:, round(speed * t) : round(speed * t) + W] for t in range(n)])

    def zoom(img: np.ndarray, rate: float) -> np.ndarray:
        m = [cv2.getRotationMatrix2D((W / 2, H / 2), 0, 1 + rate * t) for t in range(n)]
        return np.stack([cv2.warpAffine(img, mt, (W, H), borderMode=cv2.BORDER_REFLECT) for mt in m])

    clips = {
        "pan 3 px": pan(wide, 3),
        "pan 10 px": pan(wide, 10),
        "whip pan 20 px": pan(wide, 20),
        "smooth pan 6 px": pan(smooth, 6),
        "zoom in": zoom(smooth[:, :W], 0.03),
        "square at 8 px": shot(4, n, speed=8),
    }
    for name, frames in clips.items():
        found, _ = detect(save(tmp_path / "motion.mp4", frames, fps), CutParams())
        assert found == [], name


def test_synthetic_corpus(corpus: Path) -> None:
    """Hard cuts, fades through black, dissolves between moving scenes and sub-second scenes."""
    videos = json.loads((corpus / "ground_truth.json").read_text())["videos"]
    kinds = {t["kind"] for v in videos.values() for t in v["transitions"]}
    assert kinds == {"cut", "fade", "dissolve"}
    assert any(s["end_frame"] - s["start_frame"] < v["fps"] for v in videos.values() for s in v["segments"])
    total = sum(score_videos(load_truth(corpus / "ground_truth.json"), CutParams()).values(), Score(0, 0, 0))
    assert total.truth >= 12
    assert min(total.precision, total.recall, total.f1) >= 0.95, total


def test_shared_media_meet_their_ground_truth(media: Path) -> None:
    """testvideo.mp4's cuts, fades and dissolve, fades.mp4's fades through black, counter.mp4's cuts
    one second apart, the rotated film clip's two cuts and delayed_start.mp4's unfinished fade in."""
    scores = score_videos(load_truth(MEDIA_TRUTH, media), CutParams())
    assert {name: s.f1 for name, s in scores.items()} == dict.fromkeys(scores, 1.0)


def test_hard_cut_scores_are_pyscenedetects(media: Path, corpus: Path) -> None:
    """The detector's own HSV pass gives ContentDetector's frame scores and AdaptiveDetector's cuts
    exactly, frame by frame, on real footage (fades, a rotated film clip) and the synthetic corpus."""
    from av.video.reformatter import VideoReformatter
    from scenedetect import AdaptiveDetector, FrameTimecode

    from svd.curation.scenes import detection_size
    from svd.media.io import iter_decoded, probe, to_array

    p = CutParams()
    for video in [*sorted(media.glob("*.mp4")), *sorted(corpus.glob("*.mp4"))[:3]]:
        info, sws = probe(video), VideoReformatter()
        ours, theirs = SceneDetector(info.fps, p), AdaptiveDetector(p.adaptive_threshold, min_scene_len=0)
        size = detection_size(info.width, info.height, p)
        for d in iter_decoded(video, deblock=False):
            frame = to_array(d.frame, size, sws, info.sar)
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            cuts = [t.frame_num for t in theirs.process_frame(FrameTimecode(d.index, info.fps), bgr)]
            assert ours._hsv_change(frame) == theirs._frame_score, (video.name, d.index)
            assert ours._adaptive(d.index) == cuts, (video.name, d.index)


def test_memory_stays_bounded_over_a_long_video() -> None:
    """2000 frames of a slow pan with a hard cut every 250: the detector holds a window of frames
    sized by max_transition_seconds, not the video, and still finds every cut."""
    fps, p = 25.0, CutParams()
    canvases = [cv2.resize(texture(s, width=2 * W), (2 * 64, 48)) for s in range(8)]
    det = SceneDetector(fps, p)
    for t in range(2000):
        x = t % 250 // 4
        det.push(canvases[t // 250][:, x : x + 64].round().astype(np.uint8))
        assert len(det.frames) <= det.window
    assert det.window <= math.ceil(p.max_transition_seconds * fps) + 8
    assert det.finish() == [Transition(c, c, "cut") for c in range(250, 2000, 250)]


def test_scenes_are_the_spans_between_transitions_however_short() -> None:
    found = [Transition(10, 10, "cut"), Transition(11, 11, "cut"), Transition(20, 26, "fade")]
    assert scenes(found, 40) == [(0, 10), (10, 11), (11, 20), (26, 40)]
    assert scenes([Transition(0, 5, "fade")], 5) == []


def test_score_matches_one_to_one_within_the_tolerance() -> None:
    cut, fade = Transition(50, 50, "cut"), Transition(100, 110, "fade")
    assert score([cut, fade], [Transition(52, 52, "cut"), Transition(112, 118, "fade")]) == Score(2, 2, 2)
    assert score([cut], [Transition(53, 53, "cut")]).hits == 0  # a cut 3 frames off is wrong
    assert score([fade], [Transition(113, 113, "cut")]).hits == 1  # spans widened by 2 touch
    assert score([fade], [Transition(114, 114, "cut")]).hits == 0
    two = score([cut], [Transition(49, 49, "cut"), Transition(51, 51, "cut")])
    assert (two.precision, two.recall) == (0.5, 1.0)
