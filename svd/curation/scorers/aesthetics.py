"""Aesthetics and caption similarity from one CLIP embedding of the first, middle and last frame
(paper App. C; the LVD-F filters drop the 25% lowest aesthetic scores and the 50% lowest
similarities).

- aesthetic_score: LAION's aesthetic predictor, an MLP on the L2-normalised CLIP ViT-L/14 image
  embedding (about 1 to 10), averaged over the picks.
- caption_similarity: cosine between the normalised image and caption embeddings, averaged over the
  picks; null for a clip without a caption.

Weights come from configured paths only, never invented: `model` is a CLIP model in transformers'
format (a folder or a hub id such as openai/clip-vit-large-patch14, read from safetensors), `head`
the predictor's MLP as a safetensors file. LAION ships the MLP as a pickled state dict; converting
it once needs no code of theirs (`safetensors.torch.save_file(torch.load(pth, weights_only=True),
out)`). Without `model` both columns are null, without `head` the aesthetic score is: the report
says "not scored" and the filter skips the rule.

The picks go through CLIP's own image processor (resize, centre crop, normalisation), so scores
match what the model was trained to see whatever the video's size.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from svd.curation.models import LOADS, one_torch_thread
from svd.curation.scorers.base import ClipFrames, ClipParams, Column, Frames, Pick, torch_device


class AestheticsParams(ClipParams):  # model null: not scored
    head: str | None = None  # LAION aesthetic MLP, safetensors; null: no aesthetic_score
    frames: tuple[Pick, ...] = Field(default=("first", "middle", "last"), min_length=1)
    side: int = Field(default=224, ge=32)  # short side of the picks handed to CLIP's processor, px


class Aesthetics:
    name: ClassVar[str] = "aesthetics"
    Params = AestheticsParams
    columns: ClassVar[dict[str, Column]] = {
        "aesthetic_score": Column(
            "LAION aesthetic predictor on CLIP image embeddings, mean of picks", optional=True
        ),
        "caption_similarity": Column(
            "cosine of CLIP image and caption embeddings, mean of picks", -1.0, 1.0, optional=True
        ),
    }

    def __init__(self, params: AestheticsParams) -> None:
        self.p = params

    def frames(self) -> Frames:
        if self.p.model is None:
            return Frames()  # nothing to score with: no frames decoded for it
        return Frames(picks=self.p.frames, short_side=self.p.side, caption=True)

    def score(self, clip: ClipFrames) -> dict[str, float | None]:
        return self.score_many([clip])[0]

    def score_many(self, clips: list[ClipFrames]) -> list[dict[str, float | None]]:
        """All of a video's clips: their frames through CLIP in batches of `batch`, each distinct
        caption once."""
        if self.p.model is None or not clips:
            return [{"aesthetic_score": None, "caption_similarity": None} for _ in clips]
        import torch

        device = torch_device(self.p.device)
        model, processor, tokenizer = load(self.p.model, device)
        head = aesthetic_head(self.p.head, model.config.projection_dim, device) if self.p.head else None
        frames = [f for c in clips for f in c.frames]
        texts = sorted({c.caption for c in clips if c.caption})
        with one_torch_thread(), torch.inference_mode():
            image = embed_images(model, processor, frames, self.p.batch)
            aesthetic = head(image)[:, 0].cpu() if head is not None else None
            text = dict(zip(texts, embed_text(model, tokenizer, texts), strict=True)) if texts else {}
            out, at = [], 0
            for c in clips:
                picks = slice(at, at + len(c.frames))
                at += len(c.frames)
                similar = image[picks] @ text[c.caption] if c.caption else None
                out.append(
                    {
                        "aesthetic_score": float(aesthetic[picks].mean()) if aesthetic is not None else None,
                        "caption_similarity": float(similar.mean()) if similar is not None else None,
                    }
                )
        return out


@cache
def load(ref: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """CLIP on `device`, its image processor and its tokenizer, once per process (a worker's first
    clip)."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    LOADS["aesthetics"] += 1
    model = CLIPModel.from_pretrained(ref, use_safetensors=True).eval().to(device)
    return model, CLIPImageProcessor.from_pretrained(ref), AutoTokenizer.from_pretrained(ref)


@cache
def aesthetic_head(path: str, dim: int, device: str = "cpu") -> Any:
    """LAION's improved aesthetic predictor, layer for layer (its state dict's indices), so the
    released weights load once converted to safetensors."""
    import torch
    from safetensors.torch import load_file
    from torch import nn

    state = {k.removeprefix("layers."): v for k, v in load_file(path).items()}
    if "0.weight" not in state or state["0.weight"].shape[1] != dim:
        found = tuple(state["0.weight"].shape) if "0.weight" in state else "no layers.0.weight"
        raise ValueError(f"{path}: not an aesthetic MLP over {dim}-d CLIP embeddings (first layer: {found})")
    head = nn.Sequential(
        nn.Linear(dim, 1024),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )
    head.load_state_dict(state)
    return head.eval().to(device=device, dtype=torch.float32)


def embed_images(model: Any, processor: Any, frames: list[np.ndarray], batch: int = 64) -> Any:
    """(n, d) L2-normalised image embeddings of uint8 RGB frames, `batch` frames a forward pass on the
    model's device."""
    import torch

    out = []
    for i in range(0, len(frames), batch):
        pixels = processor(images=list(frames[i : i + batch]), return_tensors="pt").pixel_values
        e = model.get_image_features(pixel_values=pixels.to(model.device)).pooler_output
        out.append(e / e.norm(dim=-1, keepdim=True))
    return torch.cat(out)


def embed_text(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """(n, d) L2-normalised embeddings of captions, each cut to the text encoder's length."""
    limit = model.config.text_config.max_position_embeddings
    tokens = tokenizer(texts, truncation=True, max_length=limit, padding=True, return_tensors="pt").to(
        model.device
    )
    e = model.get_text_features(
        input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
    ).pooler_output
    return e / e.norm(dim=-1, keepdim=True)
