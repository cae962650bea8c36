"""Build a model by name."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from fedsyn.errors import FedsynError
from fedsyn.strict import StrictModel, keyword_options_model

from .alexnet import alexnet
from .convnet import convnet
from .imprint import ImprintModel, ImprintSpec, imprint_spec
from .lenet import lenet
from .mlp import mlp
from .resnet import resnet

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "alexnet": alexnet,
    "resnet20": partial(resnet, 20),
    "resnet32": partial(resnet, 32),
    "resnet56": partial(resnet, 56),
    "convnet": convnet,
    "lenet": lenet,
}
MODEL_NAMES: tuple[str, ...] = tuple(BUILDERS)
MODEL_OPTIONS: dict[str, type[StrictModel]] = {
    name: keyword_options_model(build, f"{name}_options") for name, build in BUILDERS.items()
}
"""Each model's options, read from its builder's keyword-only parameters (names, types, constraints), so
the experiment schema checks ``options:`` when a config loads."""


class UnknownModelError(FedsynError, ValueError):
    """``build_model`` was given a name the zoo does not know."""


def build_model(
    name: str,
    num_classes: int,
    in_shape: tuple[int, int, int] = (3, 32, 32),
    *,
    zero_bias: bool = False,
    seed: int | None = None,
    imprint: ImprintSpec | dict[str, Any] | None = None,
    **options: Any,
) -> nn.Module:
    """Build architecture ``name`` for ``num_classes`` classes and inputs of ``in_shape``.

    ``zero_bias`` sets every bias to zero after initialisation (the paper's setting). ``seed`` makes the
    initial weights a pure function of the seed without touching the global RNG. Other keyword options
    go to the architecture (``width`` for mlp/convnet, ``depth`` for mlp, ``hidden`` for alexnet).
    ``imprint`` (an :class:`ImprintSpec` or its dict) puts the active server's imprint block in front of
    the model (:mod:`fedsyn.models.imprint`), with Gaussian thresholds from the spec's statistics.
    """
    if name not in BUILDERS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    in_shape = tuple(in_shape)
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (channels, height, width), got {in_shape}")
    try:
        if seed is None:
            model = BUILDERS[name](num_classes=num_classes, in_shape=in_shape, **options)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = BUILDERS[name](num_classes=num_classes, in_shape=in_shape, **options)
    except TypeError as err:
        raise ValueError(f"bad options {sorted(options)} for model {name!r}: {err}") from err
    if zero_bias:
        with torch.no_grad():
            for module in model.modules():
                bias = getattr(module, "bias", None)
                if isinstance(bias, torch.Tensor) and not isinstance(module, nn.modules.batchnorm._BatchNorm):
                    bias.zero_()
    if imprint is not None:
        model = ImprintModel(model, imprint_spec(imprint), in_shape)
    return model
