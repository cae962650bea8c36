"""The arithmetic of one evaluation of the matching objective, and the rule of ``AttackConfig(compile="auto")``.

Compiling the objective (``torch.compile``, :mod:`attacks.inversion`) makes every iteration cheaper but
costs a one-off compilation first, so it pays only for a large enough attack. The rule must not depend on
timings: compiled and eager evaluations round differently, and the same config has to give the same
numbers on the same machine whatever its load. It therefore decides from the attack's size alone: the
FLOPs of one evaluation (counted by ``torch.utils.flop_counter`` on the attacker's replica) times the
iterations, restarts and unrolled steps, against :data:`AUTO_COMPILE_TFLOP`, on the CPU only (on a GPU
the gain was not measured, so ``"auto"`` stays eager there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

AUTO_COMPILE_TFLOP = 10.0
"""Projected TFLOP from which ``compile="auto"`` compiles on the CPU: where the time saved per iteration
outweighs a compilation without a warm cache (benchmarks/attack_quality.py, ``--compile on`` against
``off``; the figures are in issue 14's closing note)."""


def evaluation_flops(net: nn.Module, image_shape: tuple[int, ...], num_images: int) -> int:
    """FLOPs of one evaluation of the gradient-matching objective on ``net`` for ``num_images`` images:
    the forward pass, the parameter gradient with ``create_graph`` and the backward pass to the images
    (two FLOPs per multiply-add of the convolutions and matrix products, which dominate)."""
    params = [p for p in net.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    leaf = torch.zeros((num_images, *image_shape), device=device, requires_grad=True)
    labels = torch.zeros(num_images, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        images = leaf * 1  # the counter's hooks refuse a leaf as an input of autograd.grad
        loss = F.cross_entropy(net(images), labels)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        inner = sum((g * g.detach()).sum() for g in grads)
        torch.autograd.grad(inner, leaf, allow_unused=True)
    return counter.get_total_flops()


def projected_tflop(flops: int, iterations: int, restarts: int, steps: int) -> float:
    """TFLOP of a whole attack: ``flops`` per evaluation, ``steps`` local steps replayed per evaluation."""
    return flops * iterations * restarts * steps / 1e12


def auto_compile(device: torch.device, tflop: float) -> tuple[bool, str]:
    """``compile="auto"``'s decision for an attack of ``tflop`` projected TFLOP on ``device``, and the
    reason in words."""
    if device.type != "cpu":
        return False, f"auto: eager on {device.type} (compiling there was not measured)"
    chosen = tflop >= AUTO_COMPILE_TFLOP
    return chosen, f"auto: {tflop:.3g} projected TFLOP {'>=' if chosen else '<'} {AUTO_COMPILE_TFLOP:g}"
