"""The clip table: one row per clip, and one per source video that gave no clip (failed, empty or a
duplicate of another source), so nothing a run was given disappears without a reason.

Its schema is the base columns below plus the columns of the configured scorers (scorers/), so a
new scorer adds its columns here, to the data checks and to the filters without touching them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from svd.curation import scorers

STATUSES = ("ok", "failed", "empty", "duplicate")

BASE: dict[str, str] = {  # column -> pandas dtype; rows without a clip leave clip fields null
    "video": "string",  # source path or URI, as listed
    "video_sha256": "string",  # content hash: keys, duplicates and the annotation cache hang on it
    "clip": "string",  # key: WebDataset sample key in the shard (no dots), unique over the table
    "shard": "string",  # shard file, relative to curate.out
    "mp4_offset": "Int64",  # byte range of the clip's mp4 in its shard: a reader fetches one clip,
    "mp4_bytes": "Int64",  # locally or by an S3 range request, without reading the shard
    "mp4_sha256": "string",  # the clip's own content hash: the latent store's key (svd.data.latents)
    "start_frame": "Int64",  # in the source, presentation order
    "end_frame": "Int64",  # exclusive
    "start_s": "float64",
    "end_s": "float64",
    "seconds": "float64",
    "fps": "float64",  # the source's average frame rate
    "width": "Int64",  # display size: sample aspect ratio and rotation applied
    "height": "Int64",
    "frames": "Int64",
    "reencoded": "boolean",  # lossless re-encode instead of stream copy (scene too short after snapping)
    "caption": "string",
    "caption_source": "string",
    "status": "string",
    "error": "string",  # why a video failed or gave no clip; names the file
    "warning": "string",  # a problem that cost something but not the clip (e.g. a bad caption sidecar)
}
# Filled on every ok row: the data checks require them.
REQUIRED = (
    "clip",
    "shard",
    "mp4_offset",
    "mp4_bytes",
    "mp4_sha256",
    "start_frame",
    "end_frame",
    "fps",
    "width",
    "height",
    "frames",
    "reencoded",
    "caption",
    "caption_source",
)


def schema(scorer_names: list[str]) -> dict[str, str]:
    return BASE | {c: col.dtype for c, col in scorers.columns(scorer_names).items()}


def to_table(rows: list[dict[str, Any]], scorer_names: list[str]) -> pd.DataFrame:
    cols = schema(scorer_names)
    return pd.DataFrame(rows, columns=list(cols)).astype(cols).reset_index(drop=True)
