"""Scene boundaries in one streaming pass: hard cuts, fades and dissolves (paper Sec. 3.1, App. C).

Hard cuts come from PySceneDetect's cascade, ContentDetector (HSV jump between two frames) and
AdaptiveDetector (that jump over its neighbours', robust to fast motion), both with no minimum scene
length, computed here as PySceneDetect computes them (a test holds them equal) in one HSV pass that
costs a third of theirs. A cut a few frames after another is a real cut, and the scene between them
is the caller's to drop (min_clip_seconds), never to merge into a neighbour. A reported cut must
also change the picture (min_cut_change: hue flickers in grey areas at a keyframe trip HSV) into
something that is not the last frame moved (a fast pan trips ContentDetector on every frame).

Gradual transitions are a straight path in image space. A fade or dissolve from F_i to F_j blends
them, F_k = (1 - a_k) F_i + a_k F_j with a_k rising (a fade is a blend with black), so each pixel
moves straight from its old value to its new one and the summed frame-to-frame change over the span
(its path) equals the change between its ends; motion wanders, pixels going up and down as edges
pass. For each new frame j the detector scores every span (i, j) up to max_transition_seconds long
by |F_j - F_i|^2 / path(i, j), the net change times its straightness, on 1/SHRINK-size frames: it
keeps growing through a blend even while things move in it, and falls once the blend is over. The
best span whose ends differ by min_transition_change and whose path is straight enough is then
checked at detection size: its inner frames must be blends of its ends (see _verify), and its end
must not be its start moved or re-lit (a pan of smooth content is a blend to first order). The
blended frames are the transition and belong to no scene; so does the black frame a fade reaches.

With `learned` on, TransNetV2 (svd.curation.transnet) sees the same frames, and a transition only
it found is added; off by default, as on a CPU it costs more than the rest of the cascade.

One physical event seen twice (a fade also trips ContentDetector in its dark frames) is merged by
proximity, never by a scene length: a cut within MERGE_GAP frames of a gradual transition is part of
it, and gradual transitions that touch are one (a fade out to black followed by a fade in).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from svd.curation.scorers.base import torch_device
from svd.curation.transnet import LearnedCuts
from svd.media.io import iter_decoded, probe, to_array
from svd.params import CutParams

Scene = tuple[int, int]  # (start frame, end frame exclusive) of clean content

MERGE_GAP = 2  # frames: detector events this close are one event
SETTLE = 3  # frames without a better span before a gradual transition is taken as finished
SHRINK = 8  # the span search runs on frames this many times smaller than detection size
STEP_COST = 0.1  # score per frame of span: of two equally good spans the shorter wins
BLEND_EPS = 0.03  # a frame within this of either end of the blend line is clean
ZOOMS = (1.0, 1.15, 1 / 1.15, 1.32, 1 / 1.32, 1.52, 1 / 1.52)  # global zooms `moved` tries
MOVED_WIDTH = 64  # px: `moved` compares frames downscaled to about this width
ADAPTIVE_WINDOW = 2  # AdaptiveDetector's window_width: frames each side a change is compared with
ADAPTIVE_MIN_CHANGE = 15.0  # its min_content_val: the least HSV change it reports as a cut


@dataclass(frozen=True)
class Transition:
    start: int  # first frame that belongs to no scene (for a hard cut: the first frame of the new scene)
    end: int  # exclusive: the blended frames [start, end); start == end for a hard cut, except one that
    # only TransNetV2 found: it spans the frame the network marked, on whichever side of the cut
    kind: str  # "cut" | "fade" | "dissolve"


def detection_size(width: int, height: int, p: CutParams) -> tuple[int, int]:
    """(height, width) of the frames the detector wants: no wider than p.downscale_width, aspect
    kept, even sides so every decoder path agrees."""
    w = max(2, min(p.downscale_width, width) // 2 * 2)
    return max(2, round(height * w / width / 2) * 2), w


def moved(a: np.ndarray, b: np.ndarray, residual: float) -> bool:
    """Whether frame b is frame a panned, zoomed or re-exposed: some global zoom and shift of a,
    with its brightness scaled, leaves at most `residual` (RMS share) of the change from a to b.
    Runs on frames about MOVED_WIDTH wide (phase correlation needs some detail), the likeliest zoom
    (none) first."""
    k = max(1, a.shape[1] // MOVED_WIDTH)
    fa, fb = (cv2.resize(f, (f.shape[1] // k, f.shape[0] // k), interpolation=cv2.INTER_AREA) for f in (a, b))
    fa, fb = fa.astype(np.float32), fb.astype(np.float32)
    ga, gb = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (fa, fb))
    h, w = ga.shape
    hann = cv2.createHanningWindow((w, h), cv2.CV_32F)
    ones = np.ones_like(ga)
    for zoom in ZOOMS:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, zoom)
        # phaseCorrelate windows its inputs in place: hand it copies
        (dx, dy), _ = cv2.phaseCorrelate(cv2.warpAffine(ga, m, (w, h)), gb.copy(), hann)
        m = m + np.array([[0, 0, dx], [0, 0, dy]])
        valid = cv2.warpAffine(ones, m, (w, h)) > 0.999
        if valid.mean() < 0.25:
            continue
        x, y = cv2.warpAffine(fa, m, (w, h))[valid], fb[valid]  # (P, 3)
        before = float(((y - fa[valid]) ** 2).sum())
        gain = float((x * y).sum()) / max(float((x * x).sum()), 1e-6)
        if float(((y - gain * x) ** 2).sum()) <= residual**2 * before:
            return True
    return False


class SceneDetector:
    """Streaming: push() every frame of a video in presentation order (uint8 RGB (H, W, 3) at
    detection_size), then finish() once. Memory is a window of about max_transition_seconds of
    frames, whatever the length of the video."""

    def __init__(self, fps: float, p: CutParams) -> None:
        self.fps, self.p = fps, p
        self.span = max(2, math.ceil(p.max_transition_seconds * fps))  # longest gradual transition
        self.window = self.span + SETTLE + 2
        self.frames: deque[np.ndarray] = deque(maxlen=self.window)  # detection size
        self.small: np.ndarray | None = None  # (window, pixels) ring of 1/SHRINK-size frames
        self.path = np.zeros(self.window)  # ring: summed mean |frame-to-frame change| up to each frame
        self.count = 0
        self.cuts: set[int] = set()
        self.gradual: list[Transition] = []
        self.best: tuple[float, int, int] | None = None  # (score, i, j) of the open gradual span
        self.floor = 0  # spans start at or after the end frame of the last transition
        self.last_start = 0  # start frame of the span of the last gradual transition
        self.hsv: np.ndarray | None = None  # the last frame in HSV
        self.changes: deque[float] = deque(maxlen=2 * ADAPTIVE_WINDOW + 1)  # HSV change of the last frames
        self.learned = LearnedCuts(p.learned_threshold, torch_device(p.learned_device)) if p.learned else None

    @property
    def lag(self) -> int:
        """Frames after which any transition touching a frame has been found (until finish(), which
        merges what touches, drops cuts beside a fade or dissolve and adds TransNetV2's)."""
        return self.window + MERGE_GAP + ADAPTIVE_WINDOW

    def boundaries(self) -> list[int]:
        """Where scenes found so far may start or end, sorted."""
        return sorted(self.cuts | {k for t in self.gradual for k in (t.start, t.end)})

    def _frame(self, k: int) -> np.ndarray:
        """Frame k, which must still be in the window."""
        return self.frames[k - (self.count - len(self.frames))]

    def push(self, frame: np.ndarray) -> None:
        j = self.count
        h, w = frame.shape[:2]
        tiny = cv2.resize(frame, (max(1, w // SHRINK), max(1, h // SHRINK)), interpolation=cv2.INTER_AREA)
        tiny = tiny.astype(np.float32).ravel()
        if self.small is None:
            self.small = np.zeros((self.window, tiny.size), np.float32)
        slot, prev = j % self.window, (j - 1) % self.window
        step = float(np.abs(tiny - self.small[prev]).mean()) if j else 0.0
        self.path[slot] = (self.path[prev] if j else 0.0) + step
        self.small[slot] = tiny
        self.frames.append(frame)
        self.count += 1
        change = self._hsv_change(frame)
        found = [(c, True) for c in self._adaptive(j)]
        if change >= self.p.content_threshold:
            found.append((j, False))
        for c, adaptive in found:
            if c > 0 and c not in self.cuts and self._cut(c, adaptive):
                self.cuts.add(c)
        self._search(j)
        if self.learned is not None:
            self.learned.push(frame)

    def _hsv_change(self, frame: np.ndarray) -> float:
        """PySceneDetect's ContentDetector score (content_val, default weights), computed as it
        computes it: the mean |change| of hue, saturation and value from the last frame, averaged
        (0 for the first frame). Here with one absdiff and one sum instead of three int32 passes."""
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
        prev, self.hsv = self.hsv, hsv
        change = 0.0
        if prev is not None:  # sums of integers, exact, then divided as PySceneDetect divides
            pixels = float(hsv.shape[0] * hsv.shape[1])
            change = sum(v / pixels for v in cv2.sumElems(cv2.absdiff(hsv, prev))[:3]) / 3.0
        self.changes.append(change)
        return change

    def _adaptive(self, j: int) -> list[int]:
        """PySceneDetect's AdaptiveDetector (no minimum scene length) on the changes so far: the
        cut, if any, at frame j - ADAPTIVE_WINDOW, whose change stands adaptive_threshold times over
        the mean of its neighbours' on both sides."""
        if len(self.changes) < self.changes.maxlen:  # type: ignore[operator]
            return []
        *before, target = list(self.changes)[: ADAPTIVE_WINDOW + 1]
        after = list(self.changes)[ADAPTIVE_WINDOW + 1 :]
        mean = sum(before + after) / (2.0 * ADAPTIVE_WINDOW)
        if abs(mean) < 1e-5:
            ratio = 255.0 if target >= ADAPTIVE_MIN_CHANGE else 0.0
        else:
            ratio = min(target / mean, 255.0)
        cut = ratio >= self.p.adaptive_threshold and target >= ADAPTIVE_MIN_CHANGE
        return [j - ADAPTIVE_WINDOW] if cut else []

    def _cut(self, c: int, adaptive: bool) -> bool:
        """Whether a cut reported at c changes the picture, and, unless AdaptiveDetector saw it stand
        out from its neighbours, into something other than the last frame moved (a fast pan trips
        ContentDetector on every frame; a cut to a closer shot of the same thing is a cut)."""
        if self.path[c % self.window] - self.path[(c - 1) % self.window] < self.p.min_cut_change:
            return False
        a, b = self._frame(c - 1), self._frame(c)
        dark = min(float(a.mean()), float(b.mean())) <= self.p.fade_threshold
        return adaptive or dark or not moved(a, b, self.p.motion_residual)

    def _search(self, j: int) -> None:
        """Close the open span once SETTLE frames brought nothing better, then let the best span
        ending at j open one or replace the open one it overlaps, if it scores higher."""
        assert self.small is not None
        if self.best is not None and j - self.best[2] > SETTLE:
            self._close()
        i = np.arange(j - 2, max(j - self.span, self.floor, 0) - 1, -1)  # newest first: ties go short
        here = j % self.window
        # No span's ends differ by more than its path (triangle inequality): when even the longest
        # path falls short of min_transition_change, as in any still or slow stretch, none qualifies
        if (
            not len(i)
            or self.path[here] - self.path[i[-1] % self.window] < self.p.min_transition_change - 1e-3
        ):
            return
        slots = i % self.window
        change = np.abs(self.small[slots] - self.small[here]).mean(1)
        path = self.path[here] - self.path[slots]
        score = change**2 / np.maximum(path, 1e-6) - STEP_COST * (j - i)
        ok = (change >= self.p.min_transition_change) & (change >= self.p.min_straightness * path)
        if self.best is not None:
            ok &= i < self.best[2]
        if ok.any():
            k = int(np.argmax(np.where(ok, score, -np.inf)))
            if self.best is None or score[k] > self.best[0]:
                self.best = (float(score[k]), int(i[k]), j)

    def _close(self) -> None:
        """Verify the open span. A long blend over fast motion can stall the search for SETTLE
        frames and come out as two spans: if the span of both is one blend that also covers the
        frames between them, they are one transition."""
        assert self.best is not None
        _, i, j = self.best
        self.best = None
        t = self._verify(i, j)
        if t is None:  # motion: its frames may still end a longer blend that begins before them
            return
        self.floor = j
        if self.gradual and j - self.last_start <= self.span:
            last, union = self.gradual[-1], self._verify(self.last_start, j)
            if union is not None and union.start <= last.end and union.end >= t.start:
                self.gradual[-1] = Transition(min(last.start, union.start), max(t.end, union.end), union.kind)
                return
        self.gradual.append(t)
        self.last_start = i

    def _verify(self, i: int, j: int) -> Transition | None:
        """The transition in span (i, j) if its inner frames are blends of its ends, else None.

        Inner frame k sits at a_k, its projection on the line F_i -> F_j (on the small frames, so a
        long span costs little). A blend needs a_k rising, some frame well inside (|a_k - 0.5| <=
        0.3; else it is a hard cut with noise on one side), and in those frames, at detection size,
        most pixels that change (by min_transition_change or more) part way by that same a_k: motion
        moves a pixel all at once as an edge passes. Without a black end the end must also be more
        than its start moved (motion_residual): a pan of smooth content, a zoom or an exposure
        change is a blend to first order."""
        assert self.small is not None
        seq = self.small[[k % self.window for k in range(i, j + 1)]]  # (K + 2, pixels)
        # einsum, not BLAS: beside OpenCV's thread pool OpenBLAS threads can take 100x longer here
        alpha = np.einsum("kp,p->k", seq[1:-1] - seq[0], seq[-1] - seq[0])
        alpha /= max(float(((seq[-1] - seq[0]) ** 2).sum()), 1e-6)
        inside = np.flatnonzero((alpha > BLEND_EPS) & (alpha < 1 - BLEND_EPS))
        mid = [int(k) for k in inside if abs(alpha[k] - 0.5) <= 0.3]
        if not mid or np.any(np.diff(alpha[inside[0] : inside[-1] + 1]) < -BLEND_EPS):
            return None
        a, b = self._frame(i).astype(np.float32), self._frame(j).astype(np.float32)
        v = b - a  # (H, W, 3)
        changing = np.abs(v).mean(-1) >= self.p.min_transition_change  # (H, W)
        vc = v[changing]  # (P, 3)
        if not len(vc):
            return None
        for k in sorted({mid[0], mid[len(mid) // 2], mid[-1]}):  # three tell as much as thirty
            xc = (self._frame(i + 1 + k).astype(np.float32) - a)[changing]  # (P, 3)
            ak = float((xc * vc).sum()) / float((vc * vc).sum())  # a_k of the changing pixels
            part = (xc * vc).sum(-1) / (vc * vc).sum(-1)  # (P,) how far each of them went
            if np.mean(np.abs(part - ak) <= 0.2) < self.p.blend_agreement:
                return None
        dark_i, dark_j = (float(f.mean()) <= self.p.fade_threshold for f in (a, b))
        if not (dark_i or dark_j) and moved(self._frame(i), self._frame(j), self.p.motion_residual):
            return None
        start = i if dark_i else i + 1 + int(inside[0])
        end = j + 1 if dark_j else i + 2 + int(inside[-1])
        return Transition(start, end, "fade" if dark_i or dark_j else "dissolve")

    def finish(self) -> list[Transition]:
        """All transitions, sorted and non-overlapping."""
        if self.best is not None:
            self._close()
        merged: list[Transition] = []
        for t in self.gradual:  # a fade out and a fade in that touch are one fade through black
            if merged and t.start - merged[-1].end <= MERGE_GAP:
                m = merged.pop()
                t = Transition(m.start, max(m.end, t.end), "fade" if "fade" in (m.kind, t.kind) else t.kind)
            merged.append(t)
        cuts = [
            Transition(c, c, "cut")
            for c in sorted(self.cuts)
            if c < self.count and not any(g.start - MERGE_GAP <= c <= g.end + MERGE_GAP for g in merged)
        ]
        found = merged + cuts
        if self.learned is not None:  # what TransNetV2 alone saw; what both saw is one event, kept as found
            found += [
                Transition(a, b, "cut" if b - a == 1 else "dissolve")
                for a, b in self.learned.transitions()
                if not any(t.start - MERGE_GAP <= b and a <= t.end + MERGE_GAP for t in found)
            ]
        return sorted(found, key=lambda t: t.start)


def scenes(transitions: list[Transition], frames: int) -> list[Scene]:
    """The clean spans between transitions, in order; no minimum length (the caller drops scenes
    shorter than min_clip_seconds; a short scene is never merged into a neighbour)."""
    out: list[Scene] = []
    at = 0
    for t in transitions:
        if t.start > at:
            out.append((at, t.start))
        at = max(at, t.end)
    if frames > at:
        out.append((at, frames))
    return out


def detect(path: str | Path, p: CutParams) -> tuple[list[Transition], int]:
    """Transitions and frame count of a whole file, decoded once at detection size, as
    annotate's decode pass decodes it."""
    info = probe(path)
    det, sws = SceneDetector(info.fps, p), VideoReformatter()
    size = detection_size(info.width, info.height, p)
    for d in iter_decoded(path, deblock=False):
        det.push(to_array(d.frame, size, sws, info.sar))
    return det.finish(), det.count
