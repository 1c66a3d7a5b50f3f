"""Captions, the paper's three (App. C): an image captioner on the clip's middle frame, a video
captioner on frames spread over the clip, and an LLM's summary of the two. Training draws one of them
per clip with p = 0.5 / 0.25 / 0.25 (svd.data.clips).

Each model is configured by folder or hub id and loaded by transformers from safetensors. None is
configured by default (no weights can be downloaded here): an unconfigured captioner leaves its
column null, never a made-up sentence. A source's own captions (a sidecar, svd.curation.captions)
stay in `caption`, with their `caption_source`.

- image: an image-text-to-text model that captions from pixels alone (GIT's COCO checkpoints such
  as microsoft/git-large-coco, or BLIP), on the clip's middle frame;
- video: one that takes `video_frames` frames stacked as (clips, frames, 3, H, W), as GIT's VATEX
  checkpoints do (microsoft/git-large-vatex, 6 frames): the middles of as many equal parts of the
  clip, so that none is a frame next to the cut;
- summary: a causal LM (an instruction-tuned one, such as Qwen/Qwen2.5-0.5B-Instruct) given
  `prompt` with both captions, through its chat template when it has one.

Decoding is greedy: the same frames and weights give the same words, so captions are cached like
any score.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from svd.curation.models import LOADS, one_torch_thread
from svd.curation.scorers.base import ClipFrames, Column, Frames, LearnedParams, Pick, torch_device

PROMPT = (
    "Summarise these two descriptions of one video clip in one sentence.\n"
    "Image: {image}\nVideo: {video}\nSummary:"
)


class CaptionersParams(LearnedParams):  # every model null: three null columns, no frames decoded
    image: str | None = None  # image captioner (transformers image-text-to-text), folder or hub id
    video: str | None = None  # video captioner taking frames stacked (clips, frames, 3, H, W)
    summary: str | None = None  # causal LM summarising the two captions
    video_frames: int = Field(default=6, ge=1)  # frames the video captioner sees, spread over the clip
    side: int = Field(default=224, ge=32)  # short side of the frames, px, before each processor
    max_new_tokens: int = Field(default=40, ge=1)
    prompt: str = PROMPT  # the summary's prompt: {image} and {video} are the two captions
    batch: int = Field(default=16, ge=1)  # clips per generate call

    def models(self) -> list[str]:
        return [m for m in (self.image, self.video, self.summary) if m]


class Captioners:
    name: ClassVar[str] = "captioners"
    Params = CaptionersParams
    columns: ClassVar[dict[str, Column]] = {
        "caption_image": Column("image captioner on the middle frame", optional=True, dtype="string"),
        "caption_video": Column("video captioner on frames across the clip", optional=True, dtype="string"),
        "caption_summary": Column(
            "LLM summary of the image and video captions", optional=True, dtype="string"
        ),
    }

    def __init__(self, params: CaptionersParams) -> None:
        self.p = params

    def frames(self) -> Frames:
        """The middle frame for the image captioner, then the video captioner's."""
        picks: tuple[Pick, ...] = ("middle",) if self.p.image else ()
        if self.p.video:
            picks += tuple((i + 0.5) / self.p.video_frames for i in range(self.p.video_frames))
        return Frames(picks=picks, short_side=self.p.side) if picks else Frames()

    def score(self, clip: ClipFrames) -> dict[str, str | None]:
        return self.score_many([clip])[0]

    def score_many(self, clips: list[ClipFrames]) -> list[dict[str, str | None]]:
        """All of a video's clips, `batch` clips a generate call."""
        p, n = self.p, len(clips)
        if not (p.image or p.video):  # no captioner configured: null columns, and no torch to import
            return [dict.fromkeys(self.columns) for _ in clips]
        import torch

        device = torch_device(p.device)
        first = 1 if p.image else 0  # the picks: the middle frame, then the video captioner's
        with one_torch_thread(), torch.inference_mode():
            image = describe(p.image, device, [c.frames[:1] for c in clips], p) if p.image else [None] * n
            video = (
                describe(p.video, device, [c.frames[first:] for c in clips], p, stacked=True)
                if p.video
                else [None] * n
            )
            summary = (
                summarise(p.summary, device, list(zip(image, video, strict=True)), p)
                if p.summary
                else [None] * n
            )
        return [
            {"caption_image": i, "caption_video": v, "caption_summary": s}
            for i, v, s in zip(image, video, summary, strict=True)
        ]


def describe(
    ref: str, device: str, clips: list[list[np.ndarray]], p: CaptionersParams, stacked: bool = False
) -> list[str | None]:
    """A caption per clip from its frames: one frame each for an image captioner, or `stacked` as
    (clips, frames, 3, H, W) for a video captioner."""
    processor, model = captioner(ref, device)
    out: list[str | None] = []
    for i in range(0, len(clips), p.batch):
        chunk = clips[i : i + p.batch]
        pixels = processor(images=[f for c in chunk for f in c], return_tensors="pt").pixel_values
        if stacked:
            pixels = pixels.reshape(len(chunk), -1, *pixels.shape[1:])
        ids = model.generate(
            pixel_values=pixels.to(device, model.dtype), max_new_tokens=p.max_new_tokens, do_sample=False
        )
        out += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    return out


def summarise(
    ref: str, device: str, pairs: list[tuple[str | None, str | None]], p: CaptionersParams
) -> list[str | None]:
    """The LLM's first line after the prompt, per clip; prompts are left-padded into batches."""
    tokenizer, model = llm(ref, device)
    prompts = [p.prompt.format(image=i or "", video=v or "") for i, v in pairs]
    templated = bool(tokenizer.chat_template)
    if templated:
        prompts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
            )
            for t in prompts
        ]
    out: list[str | None] = []
    for i in range(0, len(prompts), p.batch):
        tokens = tokenizer(  # a chat template already holds the special tokens
            prompts[i : i + p.batch], return_tensors="pt", padding=True, add_special_tokens=not templated
        ).to(device)
        ids = model.generate(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            max_new_tokens=p.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = tokenizer.batch_decode(ids[:, tokens.input_ids.shape[1] :], skip_special_tokens=True)
        out += [t.strip().split("\n")[0].strip() for t in new]
    return out


@cache
def captioner(ref: str, device: str = "cpu") -> tuple[Any, Any]:
    """An image or video captioner and its processor, once per process."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    LOADS["captioner"] += 1
    model = AutoModelForImageTextToText.from_pretrained(ref, use_safetensors=True).eval().to(device)
    return AutoProcessor.from_pretrained(ref), model


@cache
def llm(ref: str, device: str = "cpu") -> tuple[Any, Any]:
    """The summarising LM and its tokenizer (padding on the left, as generation needs), once per
    process."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    LOADS["llm"] += 1
    tokenizer = AutoTokenizer.from_pretrained(ref, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(ref, use_safetensors=True).eval().to(device)
    return tokenizer, model
