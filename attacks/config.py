"""What the attacker does and knows: the attack's configuration, validated by pydantic.

Defaults are Geiping et al. (2020), "Inverting Gradients", section 4 and its reference code: cosine
objective, Adam with step 0.1 on the sign of the image gradient, projection into the pixel box after
every step, step size x0.1 at 3/8, 5/8 and 7/8 of the iterations, random-normal initialisation and
24,000 iterations. The paper's reduced budget is 4,800 iterations (``AttackConfig(iterations=4800)``),
which keeps the same schedule shape because milestones are fractions of the budget.

The total-variation weight decides the quality more than anything else and its best value depends on
the architecture and the budget, so ``tv=None`` (the default) looks it up in :data:`DEFAULT_TV` by
``architecture`` (see that table for the measurements behind each value), and ``tv`` may also be a list
of candidate weights that the restarts share out: the attacker keeps the restart with the lowest
matching loss, which needs no ground truth (issue 14).

Two stopping rules beside the budget (issue 16): the matching loss reaching ``loss_tol``, and a plateau
of the best matching loss (see :class:`AttackConfig` and :mod:`attacks.inversion`).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Objective = Literal["cosine", "cosine_layerwise", "l2"]
LabelStrategy = Literal["auto", "idlg", "wainakh"]

# Per-architecture total-variation weights (TV as defined in attacks.objectives.total_variation).
# Measured with benchmarks/attack_quality.py: untrained models, CIFAR-10 test images, labels known,
# BatchNorm in eval mode, PSNR in dB:
#   convnet width 32, 1,000 iterations, one image: tv 1e-5: 20.7, 1e-4: 23.0, 1e-3: 17.0
#     (width 16: 17.2, 18.9, 16.7)
#   resnet20, one image, 1,000 iterations: tv 1e-4: 12.0, 1e-2: 13.5, 1e-1: 13.3
#   resnet20, four images: 300 iterations, two batches: tv 1e-2: 12.43, 0.2: 13.42; 2,000 iterations, one
#     batch: 1e-2: 12.87, 0.2: 12.82 (breaching at its default 0.2: 13.14 and 12.92)
# so the ResNets take 0.2, at least as good at every budget measured. The other ResNets share resnet20's
# value (resnet32 B=1, 300 iterations, two images: 13.08 at 0.2 against 11.96 for resnet20 at 1e-2) and
# the remaining models the paper code's 1e-4 (not measured).
DEFAULT_TV: dict[str, float] = {
    "convnet": 1e-4,
    "resnet20": 0.2,
    "resnet32": 0.2,
    "resnet56": 0.2,
    "lenet": 1e-4,
    "mlp": 1e-4,
    "alexnet": 1e-4,
}
# Architectures whose attack runs faster in channels-last layout with one image per restart on the CPU
# (attacks.inversion explains why). Measured against NCHW on an untrained model, 2 threads, interleaved
# runs: resnet20 -12%, resnet32 -18% time per iteration; convnet width 32 +8% and width 64 +16%, so the
# ConvNet stays in NCHW.
CHANNELS_LAST: frozenset[str] = frozenset({"resnet20", "resnet32", "resnet56"})

# Used when the architecture is not given or not in the table: the value of the paper's own code.
FALLBACK_TV = 1e-4


def default_tv(architecture: str | None) -> float:
    """The measured default total-variation weight for ``architecture`` (a ``fedsyn.models`` name)."""
    if architecture is None:
        return FALLBACK_TV
    return DEFAULT_TV.get(architecture, FALLBACK_TV)


class LocalUpdate(BaseModel):
    """The client's local training that produced an update ``w_local - w_global``.

    The client ran ``steps`` plain SGD steps (no momentum, no weight decay) with step size ``lr`` on the
    mean cross-entropy of batches of ``batch_size`` of its images; see :mod:`attacks.unroll` for the
    order in which it is assumed to have visited its images.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    clients: int = Field(
        1,
        ge=1,
        description="the update is the mean of this many clients' local trainings (a secure aggregate), "
        "each on its consecutive equal share of the images",
    )

    def scaled_gradient(self, bn_mode: str) -> bool:
        """Whether this update is ``-lr`` times one gradient of all its images, so that the attack can
        match a gradient instead of unrolling the local training: one local step, taken by one client,
        or by several whose BatchNorm does not couple the images of a share (``bn_mode="eval"``)."""
        return self.steps == 1 and (self.clients == 1 or bn_mode == "eval")


class AttackConfig(BaseModel):
    """One gradient-inversion attack (Geiping et al. 2020 by default).

    Threat-model fields, recorded with every result: ``bn_mode`` (``"eval"``: BatchNorm uses the
    running statistics the server sent; ``"train"``: it uses the statistics of the candidate batch, as a
    client training in train mode does) and, passed to :func:`attacks.reconstruct` rather than stored
    here, the labels, the local hyperparameters and the FL factors the attacker knows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    iterations: int = Field(24_000, ge=1, description="optimisation steps per restart (paper: 24,000; reduced: 4,800)")
    restarts: int = Field(1, ge=1, description="independent random initialisations; the best matching loss wins")
    tv: float | tuple[float, ...] | None = Field(
        None,
        description="total-variation weight; None: DEFAULT_TV[architecture]; a list: candidate weights, restart r "
        "uses tv[r % len(tv)] and the restart with the lowest matching loss wins (needs restarts >= len(tv))",
    )
    architecture: str | None = Field(None, description="fedsyn.models name, used only to look up the default tv")
    lr: float = Field(0.1, gt=0, description="Adam step size")
    objective: Objective = "cosine"
    signed: bool = Field(True, description="feed Adam the sign of the image gradient")
    boxed: bool = Field(True, description="project the images into the valid pixel box after every step")
    init: Literal["randn", "rand", "zeros"] = "randn"
    milestones: tuple[float, ...] = Field((3 / 8, 5 / 8, 7 / 8), description="fractions of the budget")
    gamma: float = Field(0.1, gt=0, description="step-size factor at each milestone")
    bn_mode: Literal["eval", "train"] = "eval"
    label_strategy: LabelStrategy = Field("auto", description="how to recover labels when none are given")
    restart_mode: Literal["batched", "sequential"] = Field(
        "batched", description="batched: all restarts in one vectorised computation (torch.func.vmap)"
    )
    channels_last: bool | None = Field(
        None,
        description="channels-last memory layout; None: on the CPU, on when compiling, otherwise for one image "
        "per restart when the architecture is in CHANNELS_LAST",
    )
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="run the objective through torch.compile (inductor; on the CPU it needs a C++ compiler): "
        "faster per iteration after a one-off compilation (cached on disk per model and image shape); "
        "'auto': compile on the CPU when the attack's projected arithmetic reaches attacks.flops."
        "AUTO_COMPILE_TFLOP, where the saving outweighs a cold compilation (see attacks.flops)",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="arithmetic of the model evaluations (forward pass, parameter gradient, backward pass to the "
        "images): 'bf16' runs convolutions and matrix products in bfloat16 under torch.autocast (fp32 "
        "accumulation; the matching loss, TV and optimiser stay fp32), faster where the hardware has bf16 "
        "instructions (AVX512-BF16/AMX CPUs, recent GPUs) and emulated, slower, elsewhere",
    )
    plateau_window: int | None = Field(
        200,
        ge=1,
        description="plateau rule, in iterations: when, after the last milestone, no restart's best matching loss "
        "improved by more than plateau_tol (relative) over this many iterations, the attack stops (converged); "
        "None: off",
    )
    plateau_tol: float = Field(1e-3, gt=0, lt=1, description="relative improvement below which the loss has plateaued")
    loss_tol: float = Field(1e-6, ge=0, description="stop (converged) once a restart's matching loss is at most this")
    bn_prior: float = Field(
        0.1,
        ge=0,
        description="weight of the BatchNorm feature-statistics prior, used only when reconstruct() is given bn_stats",
    )
    seed: int = 0
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    threads: int | None = Field(None, ge=1, description="torch CPU threads during the attack; None: unchanged")
    progress: bool = Field(False, description="print iteration, loss, elapsed time and ETA to stderr")

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value) or list(value) != sorted(value):
            raise ValueError(f"milestones must be increasing fractions in (0, 1), got {value}")
        return value

    @field_validator("tv")
    @classmethod
    def _tv(cls, value: float | tuple[float, ...] | None) -> float | tuple[float, ...] | None:
        weights = value if isinstance(value, tuple) else () if value is None else (value,)
        if isinstance(value, tuple) and not value:
            raise ValueError("tv must be a weight >= 0, a non-empty list of them, or None")
        if any(not w >= 0 or w == float("inf") for w in weights):
            raise ValueError(f"tv weights must be finite and >= 0, got {value}")
        return value

    @model_validator(mode="after")
    def _restarts_cover_tv(self) -> AttackConfig:
        if isinstance(self.tv, tuple) and self.restarts < len(self.tv):
            raise ValueError(
                f"restarts ({self.restarts}) must be at least the number of tv candidates ({len(self.tv)}): "
                "each candidate needs a restart"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value == "auto":
            return value
        try:
            device = torch.device(value)
        except RuntimeError as err:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}") from err
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
        return value

    @property
    def tv_weights(self) -> tuple[float, ...]:
        """The candidate total-variation weights (one unless ``tv`` is a list)."""
        if isinstance(self.tv, tuple):
            return self.tv
        return (self.tv if self.tv is not None else default_tv(self.architecture),)

    @property
    def tv_weight(self) -> float:
        """The total-variation weight this attack uses; an error when ``tv`` lists several candidates."""
        if len(self.tv_weights) > 1:
            raise ValueError(f"tv lists {len(self.tv_weights)} candidates; the chosen one is in Reconstruction.stats")
        return self.tv_weights[0]

    def restart_tv(self) -> list[float]:
        """The total-variation weight of each restart: the candidates in turn."""
        weights = self.tv_weights
        return [weights[r % len(weights)] for r in range(self.restarts)]

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"AttackConfig.device={self.device!r} but CUDA is not available here")
        return device
