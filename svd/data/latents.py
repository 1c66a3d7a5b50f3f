"""The latent store: what the frozen encoders make of each training clip, computed once and read by
every later step, epoch, stage and run that trains at the same resolution and fps.

An entry holds, for every frame of one clip decoded at (fps, size) exactly as the streaming loader
decodes it, the VAE encoder's Gaussian (mean and std, unscaled) and the frame's CLIP image embedding
(the conditioning embedding when that frame starts a window). A step samples latents from the
Gaussian with its own noise, so training on the store draws what encoding the pixels would draw.
Entries are computed in float32 whatever the stage's precision.

Keys are contents, not names: the clip's mp4 sha256 (the clip table's mp4_sha256) and a hash of the
encoders' weights. A re-curated identical clip hits; a retrained autoencoder misses.

    <root>/v1-<encoders hash>/<H>x<W>@<fps>/<mp4 sha256>.safetensors

Not stored: the conditioning frame's latent. SVD adds noise of a level drawn per step to that frame
in pixel space before encoding it, so a step still encodes one frame per clip (of F), and decodes
the clip only up to that frame.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from svd import storage
from svd.data.clips import Batch, Draw, Windows, window_start
from svd.media.io import read_frames
from svd.model.components import Components
from svd.model.conditioning import clip_embed, posterior

log = logging.getLogger("svd.data.latents")

VERSION = 1  # bump when what an entry holds, or how it is computed, changes
Item = tuple[np.ndarray, np.ndarray, np.ndarray, float]  # first frame, posterior window, embedding, motion


def encoders_hash(c: Components) -> str:
    """sha256 over the weights that make an entry: the VAE's encoder half and the image encoder."""
    h = hashlib.sha256()
    for prefix, net in (("vae.", c.vae), ("image_encoder.", c.image_encoder)):
        for k, v in sorted(net.state_dict().items()):
            if prefix == "image_encoder." or k.startswith(("encoder.", "quant_conv.")):
                h.update((prefix + k).encode())
                h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def folder(root: str, encoders: str, size: tuple[int, int], fps: float) -> str:
    return storage.join(root, f"v{VERSION}-{encoders[:16]}", f"{size[0]}x{size[1]}@{fps:g}")


@torch.no_grad()
def compute_entry(c: Components, frames: np.ndarray, chunk: int = 16) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 frames -> posterior (N, 2, C, h, w) and embeds (N, D), float32."""
    dev = next(c.vae.parameters()).device
    gaussians, embeds = [], []
    for s in range(0, len(frames), chunk):
        x = torch.from_numpy(frames[s : s + chunk]).permute(0, 3, 1, 2).to(dev).float() / 127.5 - 1
        gaussians.append(posterior(c.vae, x).float().cpu())
        embeds.append(clip_embed(c, x)[:, 0].float().cpu())
    return {"posterior": torch.cat(gaussians).numpy(), "embeds": torch.cat(embeds).numpy()}


def fill(windows: Windows, c: Components, root: str) -> tuple[int, int]:
    """Compute the entries `windows`' clips lack; return (computed, already there). Resumable: each
    entry is written whole or not at all, and an interrupted fill skips what it finished."""
    where = folder(root, encoders_hash(c), windows.size, windows.fps)
    computed = present = 0
    for i, sha in enumerate(windows.content_hashes()):
        uri = storage.join(where, f"{sha}.safetensors")
        if storage.exists(uri):
            present += 1
            continue
        frames = read_frames(windows.clip_bytes(i), fps=windows.fps, size=windows.size)
        storage.write_bytes(uri, save_tensors(compute_entry(c, frames), metadata={"clip": windows.keys[i]}))
        computed += 1
        if computed % 100 == 0:
            log.info("latent store %s: %d computed, %d present", where, computed, present)
    return computed, present


class LatentWindows(Windows):
    """The same windows as `windows` (the same draw gives the same frames), served from the store:
    the posterior of the window's frames, the embedding and the pixels of its first frame."""

    def __init__(self, windows: Windows, root: str, encoders: str):
        self.__dict__.update(windows.__dict__)
        self.where = folder(root, encoders, windows.size, windows.fps)
        windows.content_hashes()  # raises now, not in a worker, when the table predates them

    def __getitem__(self, draw: Draw) -> Item:  # type: ignore[override]
        i, at = draw
        uri = storage.join(self.where, f"{self.content_hashes()[i]}.safetensors")
        try:
            entry = load_tensors(storage.read_bytes(uri))  # one request: no exists() first, on a hot path
        except FileNotFoundError:
            raise FileNotFoundError(
                f"latent store {self.where}: no entry for clip {self.keys[i]} ({uri}); "
                "fill it with `svd latents --stage NAME` (or `python -m flows latents`)"
            ) from None
        start = window_start(len(entry["posterior"]), self.frames, at, self.name(i))
        first = read_frames(self.clip_bytes(i), fps=self.fps, size=self.size, max_frames=start + 1)[start]
        return (
            first,
            entry["posterior"][start : start + self.frames],
            entry["embeds"][start],
            float(self.motion[i]),
        )

    def collate(self, items: list[Item]) -> Batch:  # type: ignore[override]
        first = torch.from_numpy(np.stack([x for x, _, _, _ in items])).permute(0, 3, 1, 2)[:, None]
        return Batch(
            frames=first.float() / 127.5 - 1,  # (B, 1, 3, H, W): the conditioning frame alone
            fps=torch.full((len(items),), float(self.fps)),
            motion=torch.tensor([m for _, _, _, m in items], dtype=torch.float32),
            posterior=torch.from_numpy(np.stack([p for _, p, _, _ in items])),
            embeds=torch.from_numpy(np.stack([e for _, _, e, _ in items]))[:, None],
        )
