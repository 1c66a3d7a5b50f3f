"""Captions a source brings with it, from a sidecar file (the paper's captioners, which need
weights, are a scorer: svd.curation.scorers.captioners).

A source video `x.mp4` may come with `x.json`: {"segments": [{"start_s", "end_s", "caption"}, ...]}
(what svd.media.synth writes, and what a scraper with per-scene descriptions can write). A clip gets
the caption of the segment that overlaps it most. Without a sidecar the caption is "" and
caption_source "none", never a made-up sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from svd import storage


class SidecarError(ValueError):
    pass


@dataclass(frozen=True)
class Captioned:
    start_s: float
    end_s: float
    caption: str


def read_sidecar(video: str) -> list[Captioned] | None:
    """Captions of `video` (path or URI) from the JSON file beside it, None when there is none."""
    path = video.rsplit(".", 1)[0] + ".json"
    if not storage.exists(path):
        return None
    try:
        data = json.loads(storage.read_bytes(path))
        return [
            Captioned(float(s["start_s"]), float(s["end_s"]), str(s["caption"])) for s in data["segments"]
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise SidecarError(f"{path}: not a caption sidecar: {type(e).__name__}: {e}") from None


def caption_for(segments: list[Captioned] | None, start_s: float, end_s: float) -> tuple[str, str]:
    """(caption, caption_source) for the clip [start_s, end_s)."""
    if not segments:
        return "", "none"
    best = max(segments, key=lambda s: min(end_s, s.end_s) - max(start_s, s.start_s))
    if min(end_s, best.end_s) - max(start_s, best.start_s) <= 0:
        return "", "none"
    return best.caption, "sidecar"
