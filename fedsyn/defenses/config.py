"""Configuration of the built-in client-side defenses, one model per defense, selected by ``type``
(``fedsyn.defenses.registry`` lists every defense with its config class)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fedsyn.strict import StrictModel


class ClipNoise(StrictModel):
    """Local DP: clip the whole update to L2 norm ``clip``, add N(0, (noise_multiplier * clip)^2).

    ``adjacency`` fixes what the reported epsilon protects (see ``fedsyn.defenses.accounting``):
    ``replace`` (default, local DP: any two clipped updates differ by at most ``2 * clip``) or
    ``add_remove`` (user-level DP as in DP-FedAvg: sensitivity ``clip``).
    """

    type: Literal["clip_noise"]
    clip: float = Field(1.0, gt=0)
    noise_multiplier: float = Field(0.0, ge=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    adjacency: Literal["replace", "add_remove"] = "replace"


class DPSGD(StrictModel):
    """DP-SGD during local training (Opacus): per-sample clipping and Gaussian noise."""

    type: Literal["dpsgd"]
    max_grad_norm: float = Field(1.0, gt=0)
    noise_multiplier: float = Field(1.0, ge=0)
    delta: float = Field(1e-5, gt=0, lt=1)


class Prune(StrictModel):
    """Top-k sparsification: zero the ``fraction`` of update entries with the smallest magnitude.

    ``scope`` ``layer`` (default, as in the DLG paper's defense) ranks the entries of each tensor
    separately; ``global`` ranks all entries of the update together.
    """

    type: Literal["prune"]
    fraction: float = Field(0.9, gt=0, lt=1)
    scope: Literal["layer", "global"] = "layer"


class Quantize(StrictModel):
    """Quantise the update: ``sign`` (1 bit times the mean magnitude) or ``uniform`` with ``bits`` bits.

    ``uniform`` puts ``2**bits`` evenly spaced levels on each tensor's [min, max] (8 bits unless set) and
    rounds to them ``stochastic``-ally (unbiased, QSGD-style; the default) or to the ``nearest`` level.
    Unset fields stay ``None`` so that a dumped config validates again (a cell travels as JSON).
    """

    type: Literal["quantize"]
    mode: Literal["sign", "uniform"] = "uniform"
    bits: int | None = Field(None, ge=1, le=16)
    rounding: Literal["stochastic", "nearest"] | None = None

    @model_validator(mode="after")
    def _sign_is_one_bit(self) -> "Quantize":
        if self.mode == "sign" and self.bits not in (None, 1):
            raise ValueError("quantize: mode 'sign' is 1 bit; leave 'bits' unset or set it to 1")
        if self.mode == "sign" and self.rounding is not None:
            raise ValueError("quantize: 'rounding' applies to mode 'uniform' only")
        return self

    @property
    def levels_bits(self) -> int:
        """Bits per value: 1 for ``sign``, ``bits`` (default 8) for ``uniform``."""
        if self.mode == "sign":
            return 1
        return self.bits if self.bits is not None else 8

    @property
    def rounding_mode(self) -> Literal["stochastic", "nearest"]:
        return self.rounding if self.rounding is not None else "stochastic"


class SecAgg(StrictModel):
    """Flower's SecAgg+: the server only sees the sum of the clients' (quantised) updates.

    The fields are ``flwr.server.workflow.SecAggPlusWorkflow``'s: each client's key is split into
    ``num_shares`` shares (Flower needs more than 2), ``reconstruction_threshold`` of them rebuild
    it; values are clipped to ``[-clipping_range, clipping_range]`` and quantised to
    ``quantization_range`` integer levels before masking.
    """

    type: Literal["secagg"]
    num_shares: int = Field(3, ge=3)
    reconstruction_threshold: int = Field(2, ge=2)
    clipping_range: float = Field(8.0, gt=0)
    quantization_range: int = Field(4194304, ge=2, lt=2**32)

    @model_validator(mode="after")
    def _threshold_below_shares(self) -> "SecAgg":
        if self.reconstruction_threshold >= self.num_shares:
            raise ValueError(
                f"secagg: reconstruction_threshold ({self.reconstruction_threshold}) must be less than "
                f"num_shares ({self.num_shares})"
            )
        return self

    def check_clients(self, clients: int) -> None:
        """Raise ``ValueError`` when a federation of ``clients`` clients cannot run this setting."""
        if clients < self.num_shares:
            raise ValueError(
                f"secagg: num_shares ({self.num_shares}) needs at least as many clients per round, the federation has {clients}"
            )
