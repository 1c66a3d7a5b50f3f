from __future__ import annotations

import torch

from svd.model import components
from svd.model.inflate import inflate
from svd.params import Architecture, ComputeParams
from svd.train.compute import layers, speed_up_layers


def saved_bytes_and_grads(unet: torch.nn.Module, x: torch.Tensor, cond: dict) -> tuple[int, list]:
    """Bytes autograd keeps for backward during one forward, and the gradients it then gives."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    unet.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = unet(x, torch.ones(x.shape[0]), **cond).sample
    out.square().mean().backward()
    return saved, [p.grad.clone() for p in unet.parameters()]


def unet_and_inputs() -> tuple[torch.nn.Module, torch.Tensor, dict]:
    torch.manual_seed(0)
    unet = inflate(components.build(Architecture(), 32).unet, 32, 8)
    x = torch.randn(2, 8, 8, 8, 8)  # noisy latents and the concatenated frame latents
    cond = dict(encoder_hidden_states=torch.randn(2, 1, 32), added_time_ids=torch.randn(2, 3))
    return unet, x, cond


def test_checkpointing_keeps_only_layer_inputs_and_changes_no_gradient():
    """Every resnet and attention layer, the temporal ones included, is recomputed in backward:
    autograd keeps a fraction of what diffusers' own switch keeps (which leaves the temporal
    transformers' activations resident), and the gradients are the same. Recomputing one kind of
    layer alone keeps more than all and less than none, with the same gradients."""
    unet, x, cond = unet_and_inputs()
    plain, ref = saved_bytes_and_grads(unet, x, cond)
    unet.enable_gradient_checkpointing()
    theirs, _ = saved_bytes_and_grads(unet, x, cond)
    unet.disable_gradient_checkpointing()
    keys = set(unet.state_dict())
    speed_up_layers(unet, ComputeParams(gradient_checkpointing=True))
    ours, grads = saved_bytes_and_grads(unet, x, cond)
    assert set(unet.state_dict()) == keys
    assert ours < 0.5 * theirs < 0.5 * plain
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for kind in ("resnets", "attention"):
        unet, x, cond = unet_and_inputs()
        speed_up_layers(unet, ComputeParams(gradient_checkpointing=True, checkpoint_layers=kind))
        wrapped = {id(x) for x in layers(unet) if hasattr(x.forward, "__wrapped__")}
        assert wrapped == {id(x) for x in layers(unet, kind)}, kind
        some, grads = saved_bytes_and_grads(unet, x, cond)
        assert ours < some < plain, kind
        for a, b in zip(grads, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
