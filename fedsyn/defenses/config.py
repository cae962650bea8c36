"""Configuration of the client-side defenses (one model per defense, selected by ``type``)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from fedsyn.strict import StrictModel


class ClipNoise(StrictModel):
    """Local DP: clip the whole update to L2 norm ``clip``, add N(0, (noise_multiplier * clip)^2)."""

    type: Literal["clip_noise"]
    clip: float = Field(1.0, gt=0)
    noise_multiplier: float = Field(0.0, ge=0)
    delta: float = Field(1e-5, gt=0, lt=1)


class DPSGD(StrictModel):
    """DP-SGD during local training (Opacus): per-sample clipping and Gaussian noise."""

    type: Literal["dpsgd"]
    max_grad_norm: float = Field(1.0, gt=0)
    noise_multiplier: float = Field(1.0, ge=0)
    delta: float = Field(1e-5, gt=0, lt=1)


class Prune(StrictModel):
    """Top-k sparsification: zero the ``fraction`` of update entries with the smallest magnitude."""

    type: Literal["prune"]
    fraction: float = Field(0.9, gt=0, lt=1)


class Quantize(StrictModel):
    """Quantise the update: ``sign`` (1 bit times the mean magnitude) or ``uniform`` with ``bits`` bits."""

    type: Literal["quantize"]
    mode: Literal["sign", "uniform"] = "uniform"
    bits: int = Field(8, ge=1, le=16)

    @model_validator(mode="after")
    def _sign_is_one_bit(self) -> "Quantize":
        if self.mode == "sign" and self.bits != 1 and "bits" in self.model_fields_set:
            raise ValueError("quantize: mode 'sign' is 1 bit; leave 'bits' unset or set it to 1")
        return self


class SecAgg(StrictModel):
    """Flower's SecAgg+: the server only sees the sum of the clients' (quantised) updates."""

    type: Literal["secagg"]
    num_shares: int = Field(3, ge=2)
    reconstruction_threshold: int = Field(2, ge=1)
    clipping_range: float = Field(8.0, gt=0)
    quantization_range: int = Field(4194304, ge=2)


DefenseConfig = Annotated[Union[ClipNoise, DPSGD, Prune, Quantize, SecAgg], Field(discriminator="type")]
DEFENSE_TYPES: tuple[str, ...] = ("clip_noise", "dpsgd", "prune", "quantize", "secagg")


class DefenseSet(StrictModel):
    """The defenses one cell applies, in order, to every client update. Empty means no defense."""

    name: str = "none"
    steps: tuple[DefenseConfig, ...] = ()
