"""The attacker's replica of the client's model, in the BatchNorm mode of the threat model."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .bnstats import batchnorm_layers
from .config import AttackConfig

Params = dict[str, torch.Tensor]


def replica(model: nn.Module, config: AttackConfig, device: torch.device) -> nn.Module:
    """A float32 copy of ``model`` on ``device`` that computes the client's loss as the threat model says.

    Everything is put in eval mode (no dropout noise). With ``bn_mode="train"`` the BatchNorm layers use
    the statistics of the batch they see, like a client training in train mode, and keep no running
    statistics (they would not change the gradient, and the attack must not mutate them). With
    ``precision="bf16"`` BatchNorm computes in float32 on the bfloat16 output of the layer before it.
    """
    copied = copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()
    for layer in batchnorm_layers(copied):
        if config.bn_mode == "train":
            layer.train()
            layer.track_running_stats = False
            layer.running_mean = None
            layer.running_var = None
            layer.num_batches_tracked = None
        if config.precision == "bf16":
            layer.register_forward_pre_hook(_in_float32)
    for param in copied.parameters():
        param.requires_grad_(True)
    return copied


def _in_float32(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """BatchNorm's input back in float32 under bfloat16 autocast: its statistics and running buffers stay
    float32 (and torch's batched BatchNorm rule rejects a bfloat16 input with float32 buffers)."""
    return tuple(arg.float() for arg in args)


def parameter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def task_loss(model: nn.Module, params: Params, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The client's training loss, mean cross-entropy, with ``params`` in place of the model's own."""
    buffers = dict(model.named_buffers())
    return F.cross_entropy(functional_call(model, (params, buffers), (images,)), labels)


def last_layer_index(model: nn.Module) -> int:
    """Index in ``model.parameters()`` of the last ``nn.Linear``'s weight, which label recovery reads."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("label recovery needs a final nn.Linear classifier; pass labels= instead")
    last = linears[-1]
    for index, param in enumerate(model.parameters()):
        if param is last.weight:
            return index
    raise ValueError("the last nn.Linear's parameters are not among model.parameters()")
