"""Tiny random models saved in the formats the real ones come in, for tests and benches: they run
the loading code real weights go through, without a download. No pipeline step imports this."""

from __future__ import annotations

import itertools
from pathlib import Path


def save_tiny_clip(out: Path, projection: int = 16, seed: int = 0) -> tuple[str, str]:
    """A randomly initialised tiny CLIP (transformers' format, byte-level tokenizer) and aesthetic
    head (LAION's layout, safetensors) under `out`, seeded: tests and benches run the loading code
    real weights go through, without a download. (CLIP folder, head file)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from svd.model.components import BYTE_VOCAB, byte_tokenizer

    torch.manual_seed(seed)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    text = dict(
        vocab_size=BYTE_VOCAB,
        max_position_embeddings=77,
        bos_token_id=BYTE_VOCAB - 2,
        eos_token_id=BYTE_VOCAB - 1,
    )
    config = CLIPConfig(
        text_config=small | text,
        vision_config=small | dict(image_size=32, patch_size=8),
        projection_dim=projection,
    )
    CLIPModel(config).save_pretrained(out / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        out / "clip"
    )
    byte_tokenizer(77).save_pretrained(out / "clip")
    head = {}
    for i, (a, b) in zip(
        [0, 2, 4, 6, 7], itertools.pairwise([projection, 1024, 128, 64, 16, 1]), strict=True
    ):
        layer = torch.nn.Linear(a, b)
        head[f"layers.{i}.weight"], head[f"layers.{i}.bias"] = layer.weight.detach(), layer.bias.detach()
    save_file(head, out / "head.safetensors")
    return str(out / "clip"), str(out / "head.safetensors")
