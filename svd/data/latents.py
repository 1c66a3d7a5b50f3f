"""The latent store: what the frozen encoders make of each training clip, computed once and read by
every later step, epoch, stage and run that trains at the same resolution and fps.

An entry holds, for every frame of one clip decoded at (fps, size) exactly as the streaming loader
decodes it, the VAE encoder's Gaussian (mean and std, unscaled) and, when the model has an image
encoder, the frame's CLIP image embedding (the conditioning embedding when that frame starts a
window). A step samples latents from the Gaussian with its own noise, so training on the store draws
what encoding the pixels would draw. A text-conditioned stage also stores each caption's text
embedding. Entries are computed in float32 whatever the stage's precision.

Keys are contents, not names: the clip's mp4 sha256 (the clip table's mp4_sha256) or the caption's
sha256, and a hash of the encoders' weights. A re-curated identical clip hits; a retrained
autoencoder misses; a caption edited by re-annotation is a new entry.

    <root>/v1-<encoders hash>/<H>x<W>@<fps>/<mp4 sha256>.safetensors
    <root>/v1-text-<text encoder hash>/<caption sha256>.safetensors

Not stored: the conditioning frame's latent. SVD adds noise of a level drawn per step to that frame
in pixel space before encoding it, so an image-to-video step still encodes one frame per clip (of
F), and decodes the clip only up to that frame. A text-to-video step decodes no frame; its text
encoder runs only for the empty caption that stands in for dropped ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from svd import storage
from svd.data.clips import Batch, Draw, Windows, window_start
from svd.media.io import read_frames
from svd.model.components import Components
from svd.model.conditioning import clip_embed, posterior, text_embed

log = logging.getLogger("svd.data.latents")

VERSION = 1  # bump when what an entry holds, or how it is computed, changes


@dataclass
class Item:
    first: np.ndarray | None  # (H, W, 3) uint8: the window's first frame (the conditioning frame)
    posterior: np.ndarray  # (F, 2, C, h, w)
    embeds: np.ndarray | None  # (D,) the first frame's CLIP image embedding
    motion: float
    caption: str
    text: np.ndarray | None  # (L, D) the caption's text embedding, for a text-conditioned stage


def _weights(h: hashlib._Hash, prefix: str, net: torch.nn.Module, keep: tuple[str, ...] = ("",)) -> None:
    for k, v in sorted(net.state_dict().items()):
        if k.startswith(keep):
            h.update((prefix + k).encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def encoders_hash(c: Components) -> str:
    """sha256 over the weights that make a clip's entry: the VAE's encoder half and the image encoder."""
    h = hashlib.sha256()
    _weights(h, "vae.", c.vae, ("encoder.", "quant_conv."))
    if c.image_encoder is not None:
        _weights(h, "image_encoder.", c.image_encoder)
    return h.hexdigest()


def text_hash(c: Components) -> str:
    """sha256 over what makes a caption's entry: the text encoder's weights and the tokenizer."""
    if c.text_encoder is None or c.tokenizer is None:
        raise ValueError("a text-conditioned stage needs a text encoder and tokenizer; the model has none")
    h = hashlib.sha256()
    _weights(h, "text_encoder.", c.text_encoder)
    # the tokenizer's definition, less the padding / truncation state each call sets on it
    spec = json.loads(c.tokenizer.backend_tokenizer.to_str())
    spec.pop("padding", None), spec.pop("truncation", None)
    h.update(json.dumps(spec, sort_keys=True).encode())
    h.update(str(c.tokenizer.model_max_length).encode())
    return h.hexdigest()


def folder(root: str, encoders: str, size: tuple[int, int], fps: float) -> str:
    return storage.join(root, f"v{VERSION}-{encoders[:16]}", f"{size[0]}x{size[1]}@{fps:g}")


def text_entry(root: str, text: str, caption: str) -> str:
    return storage.join(
        root, f"v{VERSION}-text-{text[:16]}", f"{hashlib.sha256(caption.encode()).hexdigest()}.safetensors"
    )


@torch.no_grad()
def compute_entry(c: Components, frames: np.ndarray, chunk: int = 16) -> dict[str, np.ndarray]:
    """(N, H, W, 3) uint8 frames -> posterior (N, 2, C, h, w) and embeds (N, D), float32."""
    dev = next(c.vae.parameters()).device
    gaussians, embeds = [], []
    for s in range(0, len(frames), chunk):
        x = torch.from_numpy(frames[s : s + chunk]).permute(0, 3, 1, 2).to(dev).float() / 127.5 - 1
        gaussians.append(posterior(c.vae, x).float().cpu())
        if c.image_encoder is not None:
            embeds.append(clip_embed(c, x)[:, 0].float().cpu())
    entry = {"posterior": torch.cat(gaussians).numpy()}
    return entry | ({"embeds": torch.cat(embeds).numpy()} if embeds else {})


def fill(windows: Windows, c: Components, root: str, text: bool = False) -> tuple[int, int]:
    """Compute the entries `windows`' clips (and with `text`, their captions) lack; return (computed,
    already there). Resumable: each entry is written whole or not at all, and an interrupted fill
    skips what it finished."""
    where = folder(root, encoders_hash(c), windows.size, windows.fps)
    computed = present = 0
    if text:
        th = text_hash(c)
        for caption in windows.all_captions():
            uri = text_entry(root, th, caption)
            if storage.exists(uri):
                present += 1
                continue
            with torch.no_grad():
                embeds = text_embed(c, [caption])[0].float().cpu().numpy()
            storage.write_bytes(uri, save_tensors({"text": embeds}, metadata={"caption": caption}))
            computed += 1
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
    the posterior of the window's frames, the embedding and the pixels of its first frame, and with
    `text` (a text_hash) the caption's text embedding."""

    def __init__(self, windows: Windows, root: str, encoders: str, text: str | None = None):
        self.__dict__.update(windows.__dict__)
        self.root, self.text = root, text
        self.where = folder(root, encoders, windows.size, windows.fps)
        windows.content_hashes()  # raises now, not in a worker, when the table predates them

    def _load(self, uri: str, what: str) -> dict[str, np.ndarray]:
        try:
            return load_tensors(storage.read_bytes(uri))  # one request: no exists() first, on a hot path
        except FileNotFoundError:
            raise FileNotFoundError(
                f"latent store {self.root}: no entry for {what} ({uri}); "
                "fill it with `svd latents --stage NAME` (or `python -m flows latents`)"
            ) from None

    def __getitem__(self, draw: Draw) -> Item:  # type: ignore[override]
        i, at, choice = draw
        entry = self._load(
            storage.join(self.where, f"{self.content_hashes()[i]}.safetensors"), f"clip {self.keys[i]}"
        )
        start = window_start(len(entry["posterior"]), self.frames, at, self.name(i))
        caption, first, text = self.caption(i, choice), None, None
        if self.text is None:  # image-to-video: the conditioning frame, decoded up to it
            first = read_frames(self.clip_bytes(i), fps=self.fps, size=self.size, max_frames=start + 1)[start]
        else:  # text-to-video: no frame is decoded, the caption's embedding is read
            text = self._load(
                text_entry(self.root, self.text, caption), f"the caption of clip {self.keys[i]}"
            )["text"]
        embeds = entry["embeds"][start] if "embeds" in entry else None
        return Item(
            first,
            entry["posterior"][start : start + self.frames],
            embeds,
            float(self.motion[i]),
            caption,
            text,
        )

    def collate(self, items: list[Item]) -> Batch:  # type: ignore[override]
        def stack(xs: list[np.ndarray | None]) -> torch.Tensor | None:
            return None if any(x is None for x in xs) else torch.from_numpy(np.stack(xs))  # type: ignore[arg-type]

        first = stack([it.first for it in items])
        if first is None:  # (B, 0, 3, H, W): no frame, only the size of one
            frames = torch.zeros(len(items), 0, 3, *self.size)
        else:  # (B, 1, 3, H, W): the conditioning frame alone
            frames = first.permute(0, 3, 1, 2)[:, None].float() / 127.5 - 1
        embeds = stack([it.embeds for it in items])
        return Batch(
            frames=frames,
            fps=torch.full((len(items),), float(self.fps)),
            motion=torch.tensor([it.motion for it in items], dtype=torch.float32),
            captions=[it.caption for it in items],
            posterior=stack([it.posterior for it in items]),
            embeds=None if embeds is None else embeds[:, None],
            text=stack([it.text for it in items]),
        )
