"""A synthetic video corpus whose ground truth is known by construction.

Curation is tested against it: every transition (a hard cut, a fade through black or a dissolve
between two moving scenes), the pixel speed of every moving shape and the area of every text overlay
are written down before a single pixel is drawn, so cut recall, motion ordering and the text filter
can be measured rather than eyeballed. Some scenes are sub-second, with a hard cut on each side: the
case a minimum scene length in a cut detector gets wrong.

Layout of `p.out` after `make_corpus`:
    <name>.mp4          H.264, short GOP (p.gop) so stream-copy clipping loses little at scene starts
    <name>.json         caption sidecar: {"fps": f, "segments": [{"start_s", "end_s", "caption"}]}
    ground_truth.json   {"seed", "videos": {name: {fps, frames, width, height, cuts, fades,
                        transitions, segments}}}; a transition is {"start", "end", "kind"}, the
                        blended frames [start, end) of a fade or dissolve, start == end == the new
                        scene's first frame for a cut (svd.curation.scenes.Transition)

The sidecar is the generic way a source supplies captions: curation attaches the caption of the
sidecar segment that overlaps a clip most. A video without a sidecar gets caption "" with
caption_source "none"; the paper's captioners (svd.curation.scorers.captioners) write their own
columns when weights are configured, and nothing invents one.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from svd.media.io import write_video
from svd.params import SynthParams

COLOURS: dict[str, tuple[int, int, int]] = {  # RGB, far apart in hue or brightness
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (240, 225, 50),
    "green": (40, 165, 60),
    "cyan": (50, 210, 225),
    "blue": (35, 60, 200),
    "purple": (135, 45, 175),
    "pink": (245, 125, 185),
    "white": (245, 245, 245),
    "grey": (120, 120, 120),
}
SHAPE_COLOURS = COLOURS | {"black": (15, 15, 15)}  # no black background: that is a fade's job
DARK = 0.45  # the second tone of every background texture
# Busy backgrounds only: on a flat one, a lone shape is a glyph to a text detector (a square is the
# character 口), which would put false text on clips whose ground truth has none.
TEXTURES = ("striped", "checkered", "diagonal", "plaid", "wavy")
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("static", "slow", "fast")
TEXTS = {"small": ("LIVE", "HD", "@news", "4K"), "large": ("BREAKING NEWS", "SALE 50% OFF", "SUBSCRIBE NOW")}
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Shape:
    kind: str
    colour: str
    radius: float
    x: float
    y: float
    vx: float  # px / frame
    vy: float


@dataclass
class Text:
    string: str
    size: str  # "small" or "large"
    scale: float
    thickness: int
    x: int
    y: int  # baseline, as cv2.putText takes it
    area: float  # bounding box (with outline) / frame area


@dataclass
class Segment:
    start: int  # first frame, inclusive
    end: int  # exclusive
    background: str
    texture: str
    motion: str
    speed: float  # px / frame of every shape in this segment
    shapes: list[Shape]
    text: Text | None
    enter: str = "cut"  # how the previous segment gives way to this one: "cut", "fade" or "dissolve"

    def caption(self) -> str:
        things = " and ".join(f"{_a(s.colour)} {s.colour} {s.kind}" for s in self.shapes)
        verb = {"static": "standing still", "slow": "drifting slowly", "fast": "moving fast"}[self.motion]
        out = f"{things} {verb} over {_a(self.background)} {self.background} {self.texture} background"
        if self.text is not None:
            out += f", with {self.text.size} text '{self.text.string}'"
        return out


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _luma(rgb: tuple[int, int, int] | np.ndarray) -> float:
    return float(np.dot([0.299, 0.587, 0.114], rgb))


def _contrasting(bg: str, min_delta: float = 40.0) -> list[str]:
    """Shape colours whose brightness differs from both background tones: optical flow runs on
    grey levels, so a cyan shape on pink (equal luma) would move without any measurable flow."""
    tones = (_luma(COLOURS[bg]), _luma(COLOURS[bg]) * DARK)
    far = [c for c in SHAPE_COLOURS if min(abs(_luma(SHAPE_COLOURS[c]) - t) for t in tones) >= min_delta]
    return [c for c in far if c != bg]


def _text(rng: np.random.Generator, size: str, target: float, w: int, h: int) -> Text:
    """Font scale solved for the target box area, so the area is known to a pixel, not guessed."""
    string = str(rng.choice(TEXTS[size]))

    def box(scale: float) -> tuple[int, int, int, int]:
        thickness = max(1, round(scale * 2))
        (tw, th), base = cv2.getTextSize(string, FONT, scale, thickness + 2)  # +2: black outline
        return tw, th + base, thickness, base

    lo, hi = 0.05, 5.0
    for _ in range(40):
        mid = (lo + hi) / 2
        tw, th, _, _ = box(mid)
        lo, hi = (mid, hi) if tw * th < target * w * h else (lo, mid)
    tw, th, thickness, base = box(lo)
    if tw > w or th > h:
        raise ValueError(f"text '{string}' at area {target} does not fit a {w}x{h} frame")
    x = int(rng.integers(0, w - tw + 1))
    y = int(rng.integers(th - base, h - base + 1))
    return Text(string, size, lo, thickness, x, y, tw * th / (w * h))


def _plan_video(rng: np.random.Generator, p: SynthParams) -> list[Segment]:
    n = int(rng.integers(p.segments[0], p.segments[1] + 1))
    segs: list[Segment] = []
    frame, prev_bg, prev_tex = 0, "", ""
    for _ in range(n):
        length = round(rng.uniform(*p.segment_seconds) * p.fps)
        bg = str(rng.choice([c for c in COLOURS if c != prev_bg]))
        texture = str(rng.choice([t for t in TEXTURES if t != prev_tex]))
        motion = str(rng.choice(MOTIONS))
        speed = {"static": 0.0, "slow": p.slow_speed, "fast": p.fast_speed}[motion]
        shapes = []
        for _ in range(int(rng.integers(2, 4))):
            r = float(rng.uniform(0.14, 0.22) * min(p.width, p.height))
            angle = float(rng.uniform(0, 2 * math.pi))
            colour = str(rng.choice(_contrasting(bg)))
            shapes.append(
                Shape(
                    str(rng.choice(SHAPES)),
                    colour,
                    r,
                    float(rng.uniform(r, p.width - r)),
                    float(rng.uniform(r, p.height - r)),
                    speed * math.cos(angle),
                    speed * math.sin(angle),
                )
            )
        text = None
        if rng.random() < p.text_fraction:
            size = str(rng.choice(["small", "large"]))
            target = p.text_areas[0] if size == "small" else p.text_areas[1]
            text = _text(rng, size, target, p.width, p.height)
        segs.append(Segment(frame, frame + length, bg, texture, motion, speed, shapes, text))
        frame += length
        prev_bg, prev_tex = bg, texture
    return segs


def _bounce(x0: float, v: float, t: int, lo: float, hi: float) -> float:
    """Position under constant speed with mirror reflection at the walls: |velocity| never changes."""
    span = hi - lo
    u = (x0 - lo + v * t) % (2 * span)
    return lo + (2 * span - u if u > span else u)


def _background(seg: Segment, w: int, h: int) -> np.ndarray:
    c = np.array(COLOURS[seg.background], np.float32)
    dark = c * DARK
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = max(8, h // 6)
    match seg.texture:
        case "plaid":
            mask = ((xx // period) % 2 + (yy // period) % 2) / 2
        case "wavy":
            mask = ((xx + 0.5 * period * np.sin(yy * 2 * np.pi / (2 * period))) // period) % 2
        case "striped":
            mask = ((xx // period) % 2).astype(np.float32)
        case "checkered":
            mask = (((xx // period) + (yy // period)) % 2).astype(np.float32)
        case "diagonal":
            mask = (((xx + yy) // period) % 2).astype(np.float32)
        case _:
            raise ValueError(f"unknown texture {seg.texture!r}")
    return (c * (1 - mask[..., None]) + dark * mask[..., None]).astype(np.uint8)


def _draw(seg: Segment, bg: np.ndarray, t: int, w: int, h: int) -> np.ndarray:
    img = bg.copy()
    for s in seg.shapes:
        x = _bounce(s.x, s.vx, t, s.radius, w - s.radius)
        y = _bounce(s.y, s.vy, t, s.radius, h - s.radius)
        col = SHAPE_COLOURS[s.colour]
        # Sub-pixel positions (shift=4): a shape at 0.75 px/frame moves 0.75 px, not 0 or 1.
        sh, k = 4, 16
        cx, cy, r = round(x * k), round(y * k), round(s.radius * k)
        match s.kind:
            case "circle":
                cv2.circle(img, (cx, cy), r, col, -1, cv2.LINE_AA, sh)
            case "square":
                cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), col, -1, cv2.LINE_AA, sh)
            case "triangle":
                pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
                cv2.fillPoly(img, [pts], col, cv2.LINE_AA, sh)
    if seg.text is not None:
        tx = seg.text
        cv2.putText(img, tx.string, (tx.x, tx.y), FONT, tx.scale, (0, 0, 0), tx.thickness + 2, cv2.LINE_AA)
        cv2.putText(img, tx.string, (tx.x, tx.y), FONT, tx.scale, (255, 255, 255), tx.thickness, cv2.LINE_AA)
    return img


def _spans(p: SynthParams) -> dict[str, tuple[int, int]]:
    """Frames (before, after) the boundary that a fade or dissolve blends. A fade's last frame out and
    first frame in are black; a dissolve's blend weights stay strictly between 0 and 1."""
    return {
        "cut": (0, 0),
        "fade": (p.fade_frames // 2, p.fade_frames - p.fade_frames // 2),
        "dissolve": (p.dissolve_frames // 2, p.dissolve_frames - p.dissolve_frames // 2),
    }


def _render(segs: list[Segment], p: SynthParams) -> np.ndarray:
    frames = np.empty((segs[-1].end, p.height, p.width, 3), np.uint8)
    bgs = [_background(seg, p.width, p.height) for seg in segs]
    spans = _spans(p)

    def draw(i: int, f: int) -> np.ndarray:  # segment i at frame f, before its start or past its end too
        return _draw(segs[i], bgs[i], f - segs[i].start, p.width, p.height).astype(np.float32)

    for i, seg in enumerate(segs):
        for f in range(seg.start, seg.end):
            img = draw(i, f)
            # the transition this frame is part of: into this segment, or out of it into the next
            for j in (i, i + 1):
                if not 0 < j < len(segs):
                    continue
                s, kind = segs[j].start, segs[j].enter
                before, after = spans[kind]
                if not s - before <= f < s + after:
                    continue
                if kind == "fade":  # down to black over `before` frames, up from black over `after`
                    img *= (s - 1 - f) / before if f < s else (f - s) / after
                elif kind == "dissolve":  # both scenes keep moving while they blend
                    a = (f - (s - before) + 1) / (before + after + 1)  # weight of the new scene
                    img = (1 - a) * draw(j - 1, f) + a * draw(j, f)
            frames[f] = img.round().astype(np.uint8)
    return frames


def _assign(plans: dict[str, list[Segment]], rng: np.random.Generator, p: SynthParams) -> None:
    """Corpus-wide choices, counted across videos so each occurs even when every video is short:
    every short_every-th inner segment is sub-second with hard cuts on both sides; of the other
    transitions every fade_every-th is a fade and every dissolve_every-th a dissolve."""
    inner = [(name, i) for name, segs in plans.items() for i in range(1, len(segs) - 1)]
    short = [t for k, t in enumerate(inner) if (k + 1) % p.short_every == 0] or inner[-1:]
    for name, i in short:
        plans[name][i].end = plans[name][i].start + max(1, round(rng.uniform(*p.short_seconds) * p.fps))
    for segs in plans.values():  # lay the segments end to end again
        for prev, seg in itertools.pairwise(segs):
            seg.start, seg.end = prev.end, prev.end + seg.end - seg.start
    cut_only = {(name, j) for name, i in short for j in (i, i + 1)}
    free = [(n, i) for n, segs in plans.items() for i in range(1, len(segs)) if (n, i) not in cut_only]
    fades = [t for k, t in enumerate(free) if (k + 1) % p.fade_every == 0] or free[-1:]
    dissolves = [t for k, t in enumerate(free) if (k + 1) % p.dissolve_every == 0 and t not in fades]
    dissolves = dissolves or [t for t in free if t not in fades][:1]
    for kind, chosen in (("fade", fades), ("dissolve", dissolves)):
        for name, i in chosen:
            plans[name][i].enter = kind


def make_corpus(p: SynthParams, seed: int) -> Path:
    """Write p.videos videos, their caption sidecars and ground_truth.json; same seed, same bytes."""
    rng = np.random.default_rng(seed)
    plans = {f"synth_{i:03d}": _plan_video(rng, p) for i in range(p.videos)}
    _assign(plans, rng, p)
    spans = _spans(p)
    p.out.mkdir(parents=True, exist_ok=True)
    truth: dict = {"seed": seed, "videos": {}}
    for name, segs in plans.items():
        write_video(p.out / f"{name}.mp4", _render(segs, p), p.fps, gop=p.gop)
        captions = [
            {"start_s": s.start / p.fps, "end_s": s.end / p.fps, "caption": s.caption()} for s in segs
        ]
        _write_json(p.out / f"{name}.json", {"fps": p.fps, "segments": captions})
        truth["videos"][name] = {
            "fps": p.fps,
            "frames": segs[-1].end,
            "width": p.width,
            "height": p.height,
            # A scene boundary: the first frame of the new scene, also for a fade (the boundary
            # between its black last frame out and black first frame in) and a dissolve.
            "cuts": [s.start for s in segs[1:]],
            "fades": [s.start for s in segs[1:] if s.enter == "fade"],
            "transitions": [
                {"start": s.start - spans[s.enter][0], "end": s.start + spans[s.enter][1], "kind": s.enter}
                for s in segs[1:]
            ],
            "segments": [
                {
                    "start_frame": s.start,
                    "end_frame": s.end,
                    "motion": s.motion,
                    "speed_px_per_frame": s.speed,
                    "text_area": s.text.area if s.text else 0.0,
                    "caption": s.caption(),
                    "background": s.background,
                    "texture": s.texture,
                    "shapes": [asdict(sh) for sh in s.shapes],
                    "text": asdict(s.text) if s.text else None,
                }
                for s in segs
            ],
        }
    _write_json(p.out / "ground_truth.json", truth)
    return p.out


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)
