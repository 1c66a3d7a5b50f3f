"""Random models saved in the formats the real ones come in: tiny for tests, at the real sizes for
timing on a GPU. They run the loading code real weights go through, without a download. No pipeline
step imports this."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

# The sizes every tiny model here shares.
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)

# CLIP ViT-L/14's sizes (openai/clip-vit-large-patch14), the model LAION's aesthetic head reads.
VIT_L_14 = dict(
    text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    vision_config=dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
    ),
    projection_dim=768,
)

# GIT-large's sizes (microsoft/git-large-coco, -vatex): a ViT-L/14 image encoder under a 6-layer decoder.
GIT_LARGE = dict(
    vision_config=VIT_L_14["vision_config"],
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=6,
    num_attention_heads=12,
    vocab_size=30522,
    max_position_embeddings=1024,
)

# Qwen2.5-0.5B-Instruct's sizes as a Llama (Qwen2 adds biases to q, k and v: a rounding in its cost).
QWEN_05B = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    tie_word_embeddings=True,
)


def save_random_clip(out: Path, projection: int = 16, seed: int = 0, vit_l: bool = False) -> tuple[str, str]:
    """A randomly initialised CLIP (transformers' format, byte-level tokenizer) and aesthetic head
    (LAION's layout, safetensors) under `out`, seeded: tiny, or with `vit_l` at ViT-L/14's sizes.
    (CLIP folder, head file)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from svd.model.components import BYTE_VOCAB, byte_tokenizer

    torch.manual_seed(seed)
    text = dict(
        vocab_size=BYTE_VOCAB,
        max_position_embeddings=77,
        bos_token_id=BYTE_VOCAB - 2,
        eos_token_id=BYTE_VOCAB - 1,
    )
    tiny = dict(
        text_config=SMALL, vision_config=SMALL | dict(image_size=32, patch_size=8), projection_dim=projection
    )
    sizes: dict = VIT_L_14 if vit_l else tiny
    config = CLIPConfig(**sizes | dict(text_config=sizes["text_config"] | text))
    side = config.vision_config.image_size
    CLIPModel(config).save_pretrained(out / "clip")
    CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(out / "clip")
    byte_tokenizer(77).save_pretrained(out / "clip")
    head = {}
    for i, (a, b) in zip(
        [0, 2, 4, 6, 7], itertools.pairwise([config.projection_dim, 1024, 128, 64, 16, 1]), strict=True
    ):
        layer = torch.nn.Linear(a, b)
        head[f"layers.{i}.weight"], head[f"layers.{i}.bias"] = layer.weight.detach(), layer.bias.detach()
    save_file(head, out / "head.safetensors")
    return str(out / "clip"), str(out / "head.safetensors")


def tiny_wordpiece() -> Any:
    """A BERT tokenizer over lower-case letters, digits and a little punctuation, one piece a
    character: GIT's tokenizer family, small enough to build here."""
    import string

    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits + ".,'"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def save_random_captioner(out: Path, frames: int | None = None, seed: int = 0, large: bool = False) -> str:
    """A random GIT in transformers' format under `out`: an image captioner, or with `frames` a video
    captioner taking that many frames (as GIT's VATEX checkpoints); tiny, or with `large` at
    GIT-large's sizes (the tokenizer stays tiny: words past it decode as [UNK]). Told never to end
    early, so that every caption costs max_new_tokens; the tiny one is initialised wide, so that its
    words depend on the pixels."""
    import torch
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    torch.manual_seed(seed)
    tokenizer = tiny_wordpiece()
    wide = dict(initializer_range=0.02 if large else 0.5)
    tiny = dict(
        vision_config=SMALL | dict(image_size=32, patch_size=8),
        vocab_size=len(tokenizer),
        max_position_embeddings=64,
        **SMALL,
    )
    sizes: dict = GIT_LARGE if large else tiny
    config = GitConfig(
        **sizes | wide | dict(vision_config=sizes["vision_config"] | wide),
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        num_image_with_embedding=frames,
    )
    model = GitForCausalLM(config)
    model.generation_config.suppress_tokens = [tokenizer.sep_token_id]
    model.save_pretrained(out)
    side = config.vision_config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    GitProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(out)
    return str(out)


def save_random_llm(out: Path, seed: int = 0, large: bool = False) -> str:
    """A random Llama causal LM with the tiny tokenizer under `out`, told never to end early: tiny
    (initialised wide, so that its words depend on the prompt), or with `large` at Qwen2.5-0.5B's
    sizes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = tiny_wordpiece()
    tiny = SMALL | dict(vocab_size=len(tokenizer), num_key_value_heads=2)
    config = LlamaConfig(
        **QWEN_05B if large else tiny,
        max_position_embeddings=512,
        initializer_range=0.02 if large else 0.5,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.suppress_tokens = [tokenizer.sep_token_id]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
