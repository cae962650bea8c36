"""Turn any torch model into its synaptic-diversity ("biomod") version."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .config import BiomodConfig
from .fuzzy import draw_factors
from .layers import CONVERTED_CLASS, LAYER_TYPE_CLASS, BiomodLayer
from .splitting import check_divisible

_FL_STREAM = 0x464C  # "FL"
_WR_STREAM = 0x5752  # "WR"


def _seed_sequence(seed: int, stream: int) -> np.random.SeedSequence:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence([int(seed), stream])


def _torch_generator(seeds: np.random.SeedSequence) -> torch.Generator:
    return torch.Generator().manual_seed(int(seeds.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))


def _target_layers(model: nn.Module, config: BiomodConfig) -> list[tuple[str, nn.Module]]:
    types = tuple(LAYER_TYPE_CLASS[name] for name in config.layer_types)
    return [(name, module) for name, module in model.named_modules() if type(module) in types]


def _output_layer(layers: list[tuple[str, nn.Module]], output_layer: str | None) -> str:
    names = [name for name, _ in layers]
    if output_layer is None:
        return names[-1]
    if output_layer not in names:
        raise ValueError(f"output_layer {output_layer!r} is not a convertible layer; candidates: {names}")
    return output_layer


def convert(
    model: nn.Module,
    config: BiomodConfig,
    seed: int = 0,
    *,
    fl_seed: int | None = None,
    output_layer: str | None = None,
) -> nn.Module:
    """Return a converted deep copy of ``model``; ``model`` itself is left untouched.

    Every ``nn.Linear`` / ``nn.Conv2d`` named in ``config.layer_types`` (exact types, not subclasses)
    becomes a ``BioLinear`` / ``BioConv2d`` with the same parameters and ``state_dict`` keys. The
    output layer (by default the last such layer in registration order, or the qualified name given
    as ``output_layer``) is never split and gets no GRAPES; FL and WR act on it like on any layer.

    Randomness: FL factors come from ``fl_seed`` when given, else from ``seed`` (pass the federation
    seed as ``fl_seed`` for ``fl_scope="shared"``); the WR streams always come from ``seed``. Nothing
    touches the global torch or NumPy RNG. With every flag off this is a plain deep copy.

    Training needs ``attach(optimizer, model)`` for FL and WR; WS and GRAPES act in the forward pass.
    """
    wr_seeds = _seed_sequence(seed, _WR_STREAM)
    fl_seeds = _seed_sequence(seed if fl_seed is None else fl_seed, _FL_STREAM)
    if any(isinstance(module, BiomodLayer) for module in model.modules()):
        raise ValueError("model is already converted; convert the plain model instead")
    converted = copy.deepcopy(model)
    if not config.any_method:
        return converted
    layers = _target_layers(converted, config)
    if not layers:
        raise ValueError(f"model has no layers of types {config.layer_types} to convert")
    output_name = _output_layer(layers, output_layer)
    if config.ws:
        for name, layer in layers:
            if name != output_name:
                check_divisible(name, layer, config.gamma)
    generator = _torch_generator(fl_seeds)
    layer_streams = wr_seeds.spawn(len(layers))
    for (name, layer), stream in zip(layers, layer_streams):
        layer.__class__ = CONVERTED_CLASS[type(layer)]
        layer.biomod_config = config
        layer.biomod_name = name
        layer.biomod_is_output = name == output_name
        layer.fl_weight_factor = layer.fl_bias_factor = None
        if config.fl:
            draw_factors(layer, config.tau, generator, config.fl_bias)
        layer.wr_rng = _torch_generator(stream) if config.wr else None
    return converted
