"""Validated configuration of the synaptic-diversity methods and the names of their combinations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from fedsyn.strict import KnownFieldsModel

LayerType = Literal["linear", "conv2d"]

METHODS: tuple[str, ...] = ("fl", "wr", "ws")
"""The three synaptic-diversity methods, in the order used by combination names."""

COMBOS: tuple[str, ...] = ("none", "ws", "wr", "wr+ws", "fl", "fl+ws", "fl+wr", "fl+wr+ws")
"""The eight FL/WR/WS combinations, in the row order of the paper's Table 3 (seed 001)."""

_COMBO_TOKENS: tuple[str, ...] = (*METHODS, "grapes")


class BiomodConfig(KnownFieldsModel):
    """Which modifiers a converted model uses, and their hyperparameters (docs/methods.md).

    Defaults are the paper's "default hyperparameter" values: ``tau=0.09``, ``d_re=14``, ``gamma=2``,
    rejuvenation after every optimizer step. ``fl_scope`` records who can know the FL factors:
    ``private`` (each client draws them from its own seed) or ``shared`` (drawn from one federation
    seed, so the server can rebuild them); the caller of ``convert`` passes the matching seed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fl: bool = False
    wr: bool = False
    ws: bool = False
    grapes: bool = False
    tau: float = Field(0.09, gt=0.0, le=2.0, description="FL factors ~ U(1 - tau/2, 1 + tau/2)")
    d_re: float = Field(14.0, gt=0.0, description="WR distance factor: sigma_re = |w_max| / d_re")
    gamma: int = Field(2, ge=1, description="WS division factor (number of synapses per connection)")
    wr_interval: int = Field(1, ge=1, description="run WR after every wr_interval optimizer steps")
    fl_scope: Literal["private", "shared"] = "private"
    fl_bias: bool = False
    layer_types: tuple[LayerType, ...] = Field(("linear", "conv2d"), min_length=1)

    @field_validator("layer_types")
    @classmethod
    def _distinct_layer_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"layer_types has duplicates: {value}; allowed values: 'linear', 'conv2d'")
        return value

    @model_validator(mode="after")
    def _splitting_needs_gamma(self) -> BiomodConfig:
        if self.ws and self.gamma < 2:
            raise ValueError("gamma must be >= 2 when ws=True (gamma=1 splits nothing: set ws=False instead)")
        return self

    @property
    def any_method(self) -> bool:
        """True when at least one modifier is on (otherwise ``convert`` returns a plain copy)."""
        return self.fl or self.wr or self.ws or self.grapes

    @classmethod
    def from_combo(cls, name: str, **hyper: Any) -> BiomodConfig:
        """Config for a combination name such as ``"fl+ws"`` (see ``COMBOS``) plus hyperparameters.

        Tokens are ``fl``, ``wr``, ``ws`` and ``grapes`` joined by ``+`` in any order and case;
        ``none`` means no method and ``biomod`` means ``fl+wr+ws``.
        """
        flags = parse_combo(name)
        clash = sorted(set(flags) & set(hyper))
        if clash:
            raise ValueError(f"{clash} are set by the combination name {name!r}; pass only hyperparameters")
        return cls(**flags, **hyper)


def parse_combo(name: str) -> dict[str, bool]:
    """Flags ``{"fl": ..., "wr": ..., "ws": ..., "grapes": ...}`` for a combination name."""
    text = name.strip().lower()
    if text == "biomod":
        text = "fl+wr+ws"
    tokens = [] if text == "none" else [token.strip() for token in text.split("+")]
    unknown = [token for token in tokens if token not in _COMBO_TOKENS]
    if unknown or len(set(tokens)) != len(tokens) or (not tokens and text != "none"):
        raise ValueError(
            f"bad combination name {name!r}; use 'none', 'biomod' or '+'-joined tokens from "
            f"{', '.join(_COMBO_TOKENS)} (e.g. {', '.join(COMBOS)})"
        )
    return {token: token in tokens for token in _COMBO_TOKENS}


def combo_name(config: BiomodConfig) -> str:
    """Canonical name of a config's combination: one of ``COMBOS``, with ``+grapes`` appended if on."""
    tokens = [method for method in METHODS if getattr(config, method)]
    if config.grapes:
        tokens.append("grapes")
    return "+".join(tokens) if tokens else "none"
