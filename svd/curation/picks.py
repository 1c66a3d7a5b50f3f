"""Picked frames (first, middle, last of each clip, or a fraction of the way through it) at each pick
scorer's size, taken from the decode pass that finds the cuts: a clip's picks would otherwise cost a
second decode from the keyframe before each of them, a whole GOP, which on real footage (GOPs of
2-10 s) is the whole video decoded again.

The clips are known only when the pass is over, so the pass keeps the frames that may still be
picks (Keeper) and lets the rest go as the detector settles: once a scene's boundaries are all found,
only the frames that may be its first, middle or last stay; of the scene still open, those past its
earliest possible pick; all within BUDGET bytes, the oldest going first. A frame the pass did not
keep (over budget, a boundary the detector moved at the end, a learned cut) is decoded afterwards
by seeking (read), which decodes as the pass does (no loop filter, one thread) and makes the same
views, so a pick is the same array whichever way it came.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from svd.curation.extract import PacketIndex
from svd.curation.scorers.base import Frames, Pick, pick_frame
from svd.media.io import VideoError, VideoInfo, to_array, video_stream

BUDGET = 128 << 20  # bytes of kept frames per video: about 650 frames at 320x180 + 128x72
SLACK = 8  # frames: a scene boundary the detector may still move, or a tail the clip may lose (B-frames)

Sizes = dict[str, tuple[int, int]]  # scorer -> (height, width) of its picked frames


def pick_sizes(specs: dict[str, Frames], info: VideoInfo) -> Sizes:
    return {n: f.size(info.width, info.height) for n, f in specs.items() if f.picks}


Grab = dict[tuple[int, int], np.ndarray]  # one decoded frame at the sizes a Viewer makes from it


class Viewer:
    """Every pick scorer's view of a decoded frame, each by a rule of its own size alone (so adding a
    scorer changes no other scorer's frames): a view that fits in the detection frame is scaled down
    from that frame by cv2, as dense frames are, when it is taken; a larger one is made by swscale
    from the decoded frame as it is decoded (grab), the only cost the decode pass pays per frame."""

    def __init__(self, info: VideoInfo, sizes: Sizes, detection: tuple[int, int]) -> None:
        self.info, self.sizes, self.detection = info, sizes, detection
        fits = {s for s in sizes.values() if s[0] <= detection[0] and s[1] <= detection[1]}
        self.made = ({detection} if fits else set()) | (set(sizes.values()) - fits)  # sizes grab() makes
        self.sws = {s: VideoReformatter() for s in self.made}  # one each: a size change costs a new context

    def grab(self, frame: av.VideoFrame, small: np.ndarray | None = None) -> Grab:
        """`small`: the frame at the detection size, when the caller has it already."""
        out = {}
        for s in self.made:
            if s == self.detection and small is not None:
                out[s] = small
            else:
                out[s] = to_array(frame, s, self.sws[s], self.info.sar)
        return out

    def views(self, grab: Grab) -> dict[str, np.ndarray]:
        """Per scorer, its view of a grabbed frame."""
        return {
            n: grab[s]
            if s in grab
            else cv2.resize(grab[self.detection], s[::-1], interpolation=cv2.INTER_AREA)
            for n, s in self.sizes.items()
        }


class Keeper:
    """The grabs of every frame of the decode pass that may be a pick: add() each frame, prune() with
    the scene boundaries found so far, then take() the picks once the clips are cut."""

    def __init__(self, picks: Iterable[Pick], lag: int, budget: int | None = None) -> None:
        self.picks = sorted(set(picks), key=str)
        named = {"first": 0.0, "middle": 0.5, "last": 1.0}
        share = [named[p] if isinstance(p, str) else float(p) for p in self.picks]
        self.earliest = min((f for f in share if f > 0), default=1.0)  # of the picks past the first frame
        self.lag = lag  # frames older than this have their scene boundaries found
        self.budget = BUDGET if budget is None else budget
        self.open: dict[int, Grab] = {}  # frames still to judge, in frame order
        self.done: dict[int, Grab] = {}  # picks of scenes that have ended, in frame order: judged for good
        self.bytes = 0

    def add(self, i: int, grab: Grab) -> None:
        if i in self.open or i in self.done:  # a repeated pts: the first frame stands, as a seek finds it
            return
        self.open[i] = grab
        self.bytes += sum(v.nbytes for v in grab.values())

    def prune(self, now: int, boundaries: list[int]) -> None:
        """Judge the frames whose scene boundaries have all been found (`boundaries`: sorted frames
        where a scene may start or end). A frame of a scene that has ended stays if it may be one of
        its picks (its clip may lose a few tail B-frames, so the end is known within SLACK); one of
        the scene still open, if it lies past that scene's earliest possible pick. Then, over budget,
        the oldest judged frames go: their picks will be fetched by seeking."""
        settled = now - self.lag
        bounds = [0, *(b for b in boundaries if b <= settled)]  # later ones may yet gain a neighbour
        for k in [k for k in self.open if k < settled]:
            j = bisect.bisect_right(bounds, k)
            a = bounds[j - 1]
            if j < len(bounds):  # the scene [a, b) has ended: its picks are known within SLACK
                b = bounds[j]
                if any(
                    pick_frame(p, a, max(a + 1, b - SLACK)) <= k <= pick_frame(p, a, b) for p in self.picks
                ):
                    self.done[k] = self.open.pop(k)
                    continue
            elif k == a or k >= a + self.earliest * (settled - a) - SLACK:  # the open scene
                continue
            self._drop(self.open, k)
        for kept in (self.done, self.open):
            while self.bytes > self.budget and kept and next(iter(kept)) < settled:
                self._drop(kept, next(iter(kept)))

    def _drop(self, kept: dict[int, Grab], k: int) -> None:
        self.bytes -= sum(v.nbytes for v in kept.pop(k).values())

    def take(self, frames: Iterable[int]) -> dict[int, Grab]:
        """The kept grabs of `frames`; the keeper lets go of everything."""
        kept = self.done | self.open
        self.open, self.done, self.bytes = {}, {}, 0
        return {i: kept[i] for i in frames if i in kept}


def picked(
    path: Path,
    viewer: Viewer,
    index: PacketIndex,
    clips: list[dict],
    specs: dict[str, Frames],
    keeper: Keeper | None = None,
) -> dict[str, list[list[np.ndarray]]]:
    """Per scorer, each clip's picked frames at the scorer's size: from `keeper` where the pass kept
    them, the rest from one seeking decode, where a frame two scorers pick is decoded once."""
    wanted = {
        n: [[pick_frame(k, c["start_frame"], c["end_frame"]) for k in f.picks] for c in clips]
        for n, f in specs.items()
        if f.picks
    }
    frames = sorted({i for w in wanted.values() for clip in w for i in clip})
    got = keeper.take(frames) if keeper is not None else {}
    missing = [i for i in frames if i not in got]
    if missing:
        got |= read(path, viewer, index, missing)
    seen = {i: viewer.views(g) for i, g in got.items()}
    return {n: [[seen[i][n] for i in clip] for clip in w] for n, w in wanted.items()}


def read(path: Path, viewer: Viewer, index: PacketIndex, frames: Iterable[int]) -> dict[int, Grab]:
    """Frames by index, each grabbed by `viewer`, decoding forward and seeking to a keyframe only
    where that skips work: a pick costs at most one GOP, and nearby picks share their decoding."""
    out: dict[int, Grab] = {}
    with av.open(str(path)) as c:
        s = video_stream(c)
        s.thread_count = 1
        s.codec_context.options = {"skip_loop_filter": "all"}  # as the decode pass (io.iter_decoded)
        decoded, at = None, -1  # the decoding generator and the index of its last frame
        for target in sorted(frames):
            key = index.key_before(target)
            if decoded is None or key > at:  # the keyframe lies ahead: jump there
                c.seek(index.seek_point(target), stream=s, backward=True)
                decoded = c.decode(s)
            for frame in decoded:
                at = index.frame_of.get(frame.pts if frame.pts is not None else -1, at + 1)
                if at >= target:
                    break
            if at != target:
                raise VideoError(f"{path}: frame {target} did not decode (got {at})")
            out[target] = viewer.grab(frame)
    return out
