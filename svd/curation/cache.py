"""Content-addressed annotation cache: what a video's cuts, clips and scores were, keyed by what
determines them.

    clips/<key>.tar + clips/<key>.json   key = hash(video sha256, cuts params, min_clip_seconds,
                                               source of the scene, extraction and media code)
    scores/<scorer>/<key>.json           key = hash(clips key, the scorer's params (a path to
                                               weights by its bytes), its source and the source
                                               that makes its frames, and the clips' captions if
                                               the scorer reads them)

So a resumed run skips every finished video, a run with one scorer's params changed recomputes that
scorer only, and a run over the same bytes under another name or folder reuses everything. Entries
are written whole (storage.write_bytes) and the clips' JSON last, so a run killed between the two
leaves an entry that reads as missing, never a half one. The cache may live on S3 for a cluster.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from svd import storage
from svd.curation import scorers
from svd.curation.scorers.base import torch_device
from svd.data.shards import read_shard, shard_bytes
from svd.params import CurateParams

_CODE = ("svd/curation/scenes.py", "svd/curation/transnet.py", "svd/curation/extract.py", "svd/media/io.py")


@dataclass
class Clips:
    meta: list[dict[str, Any]]  # per clip: clip key, frames, seconds, reencoded; or an error
    data: list[bytes]  # per clip: its mp4 (b"" for a failed one); empty when read back (clip_bytes)
    transitions: list[dict[str, Any]]


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _code_version() -> str:
    root = Path(__file__).resolve().parents[2]
    return hashlib.sha256(b"".join((root / f).read_bytes() for f in _CODE)).hexdigest()[:12]


def clips_entry(p: CurateParams, sha: str) -> str:
    cuts = p.cuts.model_dump(mode="json")
    if p.cuts.learned:  # auto as the device it resolves to: a GPU's floats are not a CPU's
        cuts["learned_device"] = torch_device(p.cuts.learned_device)
    else:  # TransNetV2's settings change nothing while it is off
        cuts = {k: v for k, v in cuts.items() if not k.startswith("learned_")}
    key = _hash(sha, cuts, p.min_clip_seconds, _code_version())
    return storage.join(p.cache, "clips", key)


def scores_entry(p: CurateParams, clips: str, scorer: str, captions: list[str] | None = None) -> str:
    """`captions`: the clips' captions, for a scorer that reads them (a new sidecar rescores it)."""
    params = {k: _content(v) for k, v in p.scorers[scorer].key().items()}
    key = _hash(
        storage.name(clips), params, scorers.version(scorer), *([captions] if captions is not None else [])
    )
    return storage.join(p.cache, "scores", scorer, key + ".json")


def _content(value: Any) -> Any:
    """A param naming a local file or folder (model weights) keys on the bytes in it, so new weights
    under the same name rescore; anything else (a hub id included) keys on itself."""
    return _digest(value) if isinstance(value, str) and Path(value).exists() else value


@cache
def _digest(path: str) -> str:
    """sha256 over a file, or a folder's files (names and bytes, in name order); once per process."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted([root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]):
        h.update(str(f.relative_to(root)).encode())
        with f.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def get_clips(entry: str) -> Clips | None:
    if not storage.exists(entry + ".json"):
        return None
    doc = json.loads(storage.read_bytes(entry + ".json"))
    return Clips(doc["clips"], [], doc["transitions"])  # the bytes stay put until shards are packed


def put_clips(entry: str, clips: Clips) -> None:
    samples = [(m["clip"], d, m) for m, d in zip(clips.meta, clips.data, strict=True) if not m.get("error")]
    storage.write_bytes(entry + ".tar", shard_bytes(samples))
    storage.write_bytes(
        entry + ".json", json.dumps({"clips": clips.meta, "transitions": clips.transitions}).encode()
    )


def clip_bytes(entry: str) -> dict[str, bytes]:
    return {key: video for key, video, _ in read_shard(entry + ".tar")}


def get_scores(entry: str) -> list[dict[str, Any]] | None:
    return json.loads(storage.read_bytes(entry)) if storage.exists(entry) else None


def put_scores(entry: str, scores: list[dict[str, Any]]) -> None:
    storage.write_bytes(entry, json.dumps(scores).encode())
