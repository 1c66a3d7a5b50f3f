"""Where data lives: local paths or `s3://bucket/prefix` URIs, behind one small set of functions.

Curation reads sources and writes shards, tables and its cache through these, so a run can go from
a laptop folder to a bucket by changing a string in params.yaml. S3 goes through boto3 with the
standard configuration chain (AWS_ENDPOINT_URL_S3 for an S3-compatible endpoint such as moto or
MinIO, the usual credential variables or profiles).

Writes are atomic for readers: locally a temporary name in the same folder and `os.replace`; on S3
one PUT, which S3 makes visible whole or not at all. Temporary names all start with `.tmp-` so a
run killed half-way can sweep what it left (`sweep_temporary`).

An S3 endpoint that goes away (a restart, a network blip) costs time, not data: every request is
retried with capped exponential backoff and jitter (botocore's standard mode) over `S3_ATTEMPTS`
attempts, about a minute of outage on average and two at most, before its error reaches the caller.
A PUT cut off mid-body leaves no object, and its retry sends the whole body again. (Standard mode
also keeps a retry budget per client, refilled by successes: a process that meets dozens of
outages in a row stops retrying until requests succeed again.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
S3_ATTEMPTS = 10  # botocore's default (legacy mode, 5 attempts) gives up within seconds


def file_sha256(path: Path) -> str:
    """The sha256 of a local file's bytes, read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_s3(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """("bucket", "key/inside") of s3://bucket/key/inside."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket in S3 URI")
    return bucket, key


def join(base: str | Path, *parts: str) -> str:
    """`base/part/...` for a local path or an S3 URI; parts may not climb out of `base`."""
    for part in parts:
        if part.startswith("/") or ".." in Path(part).parts:
            raise ValueError(f"{part!r} would escape {base}")
    if is_s3(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(Path(base).joinpath(*parts))


def _client() -> Any:
    return _client_for(os.environ.get("AWS_ENDPOINT_URL_S3"))


@cache
def _client_for(endpoint: str | None) -> Any:
    """One client per endpoint and process (boto3 clients are thread-safe, and costly to build)."""
    import boto3
    from botocore.config import Config

    retries = Config(retries={"mode": "standard", "max_attempts": S3_ATTEMPTS}, connect_timeout=10)
    return boto3.client("s3", endpoint_url=endpoint, config=retries)


def read_bytes(uri: str | Path) -> bytes:
    """A missing object is FileNotFoundError on S3 as on disk: callers handle one error, and need
    no exists() round trip first."""
    if not is_s3(uri):
        return Path(uri).read_bytes()
    from botocore.exceptions import ClientError

    bucket, key = split_s3(str(uri))
    try:
        return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(str(uri)) from None
        raise


def read_range(uri: str | Path, offset: int, length: int) -> bytes:
    """`length` bytes at `offset`: one clip out of a shard, without reading the rest."""
    if not is_s3(uri):
        with Path(uri).open("rb") as f:
            f.seek(offset)
            return f.read(length)
    bucket, key = split_s3(str(uri))
    rng = f"bytes={offset}-{offset + length - 1}"
    return _client().get_object(Bucket=bucket, Key=key, Range=rng)["Body"].read()


def exists(uri: str | Path) -> bool:
    if not is_s3(uri):
        return Path(uri).exists()
    from botocore.exceptions import ClientError

    bucket, key = split_s3(str(uri))
    try:
        _client().head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Atomic: a reader sees the old object, or none, or the whole new one."""
    if is_s3(uri):
        bucket, key = split_s3(str(uri))
        _client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}"[:255])
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def same_bytes(uri: str | Path, data: bytes) -> bool:
    """True when `uri` already holds exactly `data`; lets a resumed run skip rewriting outputs."""
    if is_s3(uri):
        bucket, key = split_s3(str(uri))
        try:
            head = _client().head_object(Bucket=bucket, Key=key)
        except Exception:
            return False
        # A single-part upload's ETag is the MD5 of its bytes; multipart ETags never match and just rewrite.
        return head["ContentLength"] == len(data) and head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    path = Path(uri)
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def listdir(uri: str | Path) -> dict[str, int]:
    """Every file under `uri` (recursively), as full paths or URIs, sorted, with its size in bytes
    (the listing has it for free; the fan-out balances its tasks by it)."""
    if not is_s3(uri):
        root = Path(uri)
        if not root.is_dir():
            raise FileNotFoundError(f"{uri}: no such folder")
        found = {str(f): _size(f) for f in root.rglob("*")}
        return {f: n for f, n in sorted(found.items()) if n is not None}
    bucket, prefix = split_s3(str(uri))
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    sizes: dict[str, int] = {}
    for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes |= {f"s3://{bucket}/{o['Key']}": o["Size"] for o in page.get("Contents", [])}
    return dict(sorted(sizes.items()))


def _size(path: Path) -> int | None:
    """A regular file's size; None for a folder, a dangling link, or a file gone since the listing
    (it is no video of this run, not an error that stops it)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def remove(uri: str | Path) -> None:
    if is_s3(uri):
        bucket, key = split_s3(str(uri))
        _client().delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)


def name(uri: str | Path) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


@contextmanager
def local_copy(uri: str | Path) -> Iterator[Path]:
    """A local file with the object's bytes, for decoders that want a path (FFmpeg seeks in it).
    Local paths are used in place; S3 objects are downloaded to a temporary folder removed after."""
    if not is_s3(uri):
        yield Path(uri)
        return
    bucket, key = split_s3(str(uri))
    d = Path(tempfile.mkdtemp(prefix="svd-"))
    try:
        local = d / ("video" + Path(key).suffix)
        _client().download_file(bucket, key, str(local))
        yield local
    finally:
        shutil.rmtree(d, ignore_errors=True)


def sweep_temporary(root: str | Path) -> int:
    """Remove temporary files a killed writer left under a local `root`; S3 has none (PUT is whole)."""
    if is_s3(root) or not Path(root).is_dir():
        return 0
    stale = [f for f in Path(root).rglob(f"{TMP_PREFIX}*") if f.is_file()]
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)
