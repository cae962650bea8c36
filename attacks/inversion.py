"""Gradient inversion: Inverting Gradients (Geiping et al. 2020), DLG's L2 variant, FedAvg unrolling.

The attack optimises candidate images x (in the model's normalised input space) so that the signal
they would produce, the gradient of the client's loss or its unrolled local update, matches the
captured one (docs/methods.md, "The attack"):

    minimise  D(signal(x), target) + tv * TV(x)

with D from :class:`attacks.objectives.Matcher`, Adam on sign(dD/dx), the step size x``gamma`` at
the milestones, x projected into the box [(0 - mean) / std, (1 - mean) / std] after every step. Each
restart keeps its iterate with the lowest objective; across restarts the one with the lowest matching
loss D wins.

Speed. A gradient target with one restart takes the plain autograd route: one forward pass, the
parameter gradient with ``create_graph=True``, the objective on the concatenated gradient, and one
backward pass to the images only. Several restarts run as one vectorised computation: ``torch.func``
computes every restart's parameter gradient (or unrolled update) under ``vmap``, so a batch of R
restarts costs one wider pass instead of R passes (``restart_mode="sequential"`` runs them one after
the other instead, like breaching does).

Compilation. With ``AttackConfig(compile=True)`` every target takes the ``torch.func`` route, the image
gradient included, and ``torch.compile`` turns one evaluation (forward, parameter gradient, matching,
TV, image gradient) into one inductor graph: the element-wise work of the double backward pass (BatchNorm,
ReLU masks, the cosine) is fused into a few loops around the convolution calls. The first call compiles
(timed apart, ``stats["compile_seconds"]``); every later call runs the compiled graph.

Memory layout. For a single image on the CPU, PyTorch's convolution heuristics send small NCHW
convolutions to a slow single-threaded path; in channels-last layout they go to oneDNN. On an
untrained ResNet20 with one image this cut the time per iteration by about 12%, on ResNet32 by 18%,
while the ConvNet, whose large convolutions use oneDNN anyway, got 8-16% slower (layout conversions).
``AttackConfig.channels_last=None`` therefore turns it on for one image per restart on the CPU for the
architectures in ``attacks.config.CHANNELS_LAST``. Compiled, channels-last was faster for every model
and batch size measured (ConvNet-32 B=1 -18%, ConvNet-64 B=1 -13%, ResNet20 B=4 -17%, ResNet20 B=1
-21%), so with ``compile=True`` it is on for every CPU attack.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap

from .config import CHANNELS_LAST, AttackConfig, LocalUpdate
from .labels import recover_labels
from .objectives import Matcher, flatten, total_variation
from .progress import Progress
from .replica import last_layer_index, parameter_names, replica, task_loss
from .targets import check_factors, check_target, check_tensors, label_signal, matched_signal, unrolls
from .unroll import unrolled_update

# evaluate(x) -> (objective per restart, matching loss per restart, d objective / dx)
Evaluate = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

# How often (in iterations) the loop checks that some restart still has a finite objective.
_FINITE_CHECK = 100


@dataclass(frozen=True)
class Reconstruction:
    """The attack's result: ``images`` (B, C, H, W) in [0, 1] on the CPU, ``labels`` (B,) int64, ``stats``."""

    images: torch.Tensor
    labels: torch.Tensor
    stats: dict[str, Any] = field(default_factory=dict)


def reconstruct(
    model: nn.Module,
    target: Sequence[torch.Tensor],
    *,
    num_images: int,
    labels: torch.Tensor | Sequence[int] | None = None,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    config: AttackConfig | None = None,
    update: LocalUpdate | None = None,
    fl_factors: Sequence[torch.Tensor | None] | None = None,
    image_shape: tuple[int, int, int] | None = None,
    mask: Sequence[torch.Tensor | None] | None = None,
) -> Reconstruction:
    """Reconstruct the ``num_images`` images behind ``target``.

    ``target`` is aligned with ``model.parameters()``: the client's gradient (``update=None``) or its
    update ``w_local - w_global`` after the local training ``update`` describes. ``labels`` are the
    attacker's knowledge of the labels; ``None`` recovers them (``config.label_strategy``).
    ``fl_factors`` (aligned with the parameters, ``None`` for unscaled ones) are the shared FL factors an
    informed attacker knows. ``mean``/``std`` are the per-channel normalisation the model expects;
    ``image_shape`` defaults to (channels, 32, 32). ``mask`` (bool tensors aligned with the parameters,
    ``None`` for "keep all") limits the matching to the entries it keeps.
    """
    config = config if config is not None else AttackConfig()
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    device = config.torch_device()
    with _threads(config.threads):
        return _Attack(
            model, target, num_images, labels, mean, std, config, update, fl_factors, image_shape, mask, device
        ).run()


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _channel_vector(name: str, values: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    vector = torch.as_tensor(values, dtype=torch.float32).flatten()
    if vector.numel() == 0 or not torch.isfinite(vector).all():
        raise ValueError(f"{name} must be finite per-channel values, got {values!r}")
    return vector.to(device)


class _Attack:
    """One call of :func:`reconstruct`: the checked inputs, then the restarts."""

    def __init__(self, model, target, num_images, labels, mean, std, config, update, fl_factors, image_shape, mask, device):
        self.config = config
        self.device = device
        self.update = update
        self.num_images = num_images
        self.channels_last = config.channels_last
        if self.channels_last is None:
            eager_gain = num_images == 1 and config.architecture in CHANNELS_LAST
            self.channels_last = device.type == "cpu" and (config.compile or eager_gain)
        self.net = replica(model, config, device, channels_last=self.channels_last)
        self.names = parameter_names(self.net)
        checked = [t.to(device) for t in check_target(model, target)]
        factors = None
        if fl_factors is not None:
            factors = [None if f is None else f.to(device) for f in check_factors(model, fl_factors)]
        self.factors = {n: f for n, f in zip(self.names, factors or []) if f is not None}
        self.unrolls = unrolls(update, config.bn_mode)
        matched = matched_signal(checked, update, factors, config.bn_mode)
        self.mean = _channel_vector("mean", mean, device)
        self.std = _channel_vector("std", std, device)
        if self.std.numel() != self.mean.numel() or not (self.std > 0).all():
            raise ValueError("mean and std need one value per channel each, and std must be positive")
        channels = self.mean.numel()
        self.image_shape = tuple(image_shape) if image_shape is not None else (channels, 32, 32)
        if len(self.image_shape) != 3 or self.image_shape[0] != channels:
            raise ValueError(f"image_shape must be ({channels}, H, W) to match mean/std, got {self.image_shape}")
        classes = self._num_classes()
        if labels is None:
            grads = label_signal(matched, update, config.bn_mode)
            self.labels = recover_labels(
                grads[last_layer_index(self.net)], num_images, strategy=config.label_strategy
            ).to(device)
            self.label_source = f"recovered ({config.label_strategy})"
        else:
            self.labels = self._given_labels(labels, classes)
            self.label_source = "given"
        if mask is not None:
            mask = check_tensors(model, mask, "mask", allow_none=True)
        self.matcher = Matcher(config.objective, matched, mask)
        self.tv = config.tv_weight
        box = (1, 1, channels, 1, 1)
        self.low = ((0 - self.mean) / self.std).view(box)
        self.high = ((1 - self.mean) / self.std).view(box)

    def _num_classes(self) -> int:
        try:
            with torch.no_grad():
                out = self.net(torch.zeros(self.num_images, *self.image_shape, device=self.device))
        except RuntimeError as err:
            raise ValueError(f"image_shape {self.image_shape} does not fit the model (pass image_shape=): {err}") from err
        if out.ndim != 2:
            raise ValueError(f"the model must output (batch, classes) logits, got shape {tuple(out.shape)}")
        return out.shape[1]

    def _given_labels(self, labels: torch.Tensor | Sequence[int], classes: int) -> torch.Tensor:
        given = torch.as_tensor(labels).flatten()
        if given.numel() != self.num_images or given.is_floating_point():
            raise ValueError(f"labels must be {self.num_images} integers, got {labels!r}")
        if given.numel() and (int(given.min()) < 0 or int(given.max()) >= classes):
            raise ValueError(f"labels must lie in [0, {classes}), got {given.tolist()}")
        return given.to(device=self.device, dtype=torch.int64)

    # -- the objective ---------------------------------------------------------------------------


    def _autograd_objective(self) -> Evaluate:
        """One restart, gradient target: module autograd with ``create_graph`` w.r.t. the parameters only."""
        params = list(self.net.parameters())
        net, labels, matcher, tv = self.net, self.labels, self.matcher, self.tv

        def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            images = x[0]
            loss = F.cross_entropy(net(images), labels)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            match = matcher(flatten(grads))
            total = match + tv * total_variation(images) if tv else match
            (dx,) = torch.autograd.grad(total, x)
            return total.detach().view(1), match.detach().view(1), dx

        return evaluate

    def _functional_objective(self, restarts: int) -> Evaluate:
        """Any target, R restarts at once: ``torch.func`` signals, vectorised over restarts by ``vmap``.

        Purely functional (``torch.func.grad`` also for the image gradient), so that ``torch.compile``
        can trace the whole evaluation into one graph.
        """
        params = {n: p.detach() for n, p in self.net.named_parameters()}
        net, labels, names, update, factors = self.net, self.labels, self.names, self.update, self.factors
        matcher, tv, replay = self.matcher, self.tv, self.unrolls

        def signal(images: torch.Tensor) -> torch.Tensor:
            if not replay:
                values = grad(lambda p: task_loss(net, p, images, labels))(params)
            else:
                values = unrolled_update(net, params, images, labels, update, factors)
            return flatten([values[n] for n in names])

        signals = vmap(signal) if restarts > 1 else (lambda x: signal(x[0]).unsqueeze(0))

        def objective(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            match = matcher(signals(x))
            total = match + tv * total_variation(x) if tv else match
            return total.sum(), (total, match)

        def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            dx, (total, match) = grad(objective, has_aux=True)(x)
            return total, match, dx

        return evaluate

    def _objective(self, restarts: int) -> Evaluate:
        if restarts == 1 and not self.unrolls and not self.config.compile:
            return self._autograd_objective()
        evaluate = self._functional_objective(restarts)
        if self.config.compile:
            evaluate = torch.compile(evaluate, dynamic=False)
        # The images enter detached: torch.func differentiates on its own, and one compiled graph serves
        # every call because dynamo guards on requires_grad.
        return lambda x: evaluate(x.detach())

    def _compiled(self, evaluate: Evaluate, start: torch.Tensor) -> float:
        """Compile ``evaluate`` by calling it once on ``start``; the seconds it took (0 when not compiling).

        Timed apart from the iterations: inductor compiles the graph once per model and image shape
        (20 to 90 seconds on two CPU cores) and caches the result on disk, so a later run with the same
        model and shapes starts within seconds.
        """
        if not self.config.compile:
            return 0.0
        began = time.perf_counter()
        try:
            evaluate(start)
        except Exception as err:  # dynamo/inductor raise many kinds; all mean "cannot compile this"
            raise RuntimeError(
                f"torch.compile could not compile the attack's objective for this model ({type(err).__name__}: "
                f"{err}); run it with AttackConfig(compile=False)"
            ) from err
        return time.perf_counter() - began

    # -- the optimisation ------------------------------------------------------------------------

    def _initial(self) -> torch.Tensor:
        shape = (self.config.restarts, self.num_images, *self.image_shape)
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        if self.config.init == "randn":
            start = torch.randn(shape, generator=generator, device=self.device)
        elif self.config.init == "rand":
            start = torch.rand(shape, generator=generator, device=self.device) * 2 - 1
        else:
            start = torch.zeros(shape, device=self.device)
        if self.channels_last:  # same values, each image stored (H, W, C)
            start = start.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        return start

    def _optimise(self, evaluate: Evaluate, start: torch.Tensor, progress: Progress, done_before: int):
        cfg = self.config
        x = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=cfg.lr)
        milestones = [max(1, int(cfg.iterations * f)) for f in cfg.milestones]
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=cfg.gamma)
        restarts = start.shape[0]
        best_x = start.clone()
        best_total = torch.full((restarts,), math.inf, device=self.device)
        best_match = torch.full((restarts,), math.inf, device=self.device)
        curve = torch.full((cfg.iterations, restarts), math.nan, device=self.device)
        run = 0
        for iteration in range(cfg.iterations):
            total, match, dx = evaluate(x)
            curve[iteration] = total
            better = total < best_total
            best_total = torch.where(better, total, best_total)
            best_match = torch.where(better, match, best_match)
            best_x = torch.where(better.view(-1, 1, 1, 1, 1), x.detach(), best_x)
            x.grad = dx.sign() if cfg.signed else dx
            optimiser.step()
            schedule.step()
            if cfg.boxed:
                with torch.no_grad():
                    x.clamp_(min=self.low, max=self.high)
            run = iteration + 1
            if progress.due():
                progress.show(done_before + run, float(total.min()))
            if run % _FINITE_CHECK == 0 and not torch.isfinite(total).any():
                break
        return best_x, best_match, curve[:run], run

    def run(self) -> Reconstruction:
        cfg = self.config
        start = self._initial()
        sequential = cfg.restart_mode == "sequential" and cfg.restarts > 1
        progress = Progress(cfg.iterations * (cfg.restarts if sequential else 1), enabled=cfg.progress)
        evaluate = self._objective(1 if sequential else cfg.restarts)
        compile_seconds = self._compiled(evaluate, start[:1] if sequential else start)
        began = time.perf_counter()
        if sequential:
            parts = [self._optimise(evaluate, start[r : r + 1], progress, r * cfg.iterations) for r in range(cfg.restarts)]
            best_x = torch.cat([p[0] for p in parts])
            best_match = torch.cat([p[1] for p in parts])
            curves = [p[2][:, 0] for p in parts]
            runs = [p[3] for p in parts]
        else:
            best_x, best_match, curve, run = self._optimise(evaluate, start, progress, 0)
            curves = list(curve.T)
            runs = [run] * cfg.restarts
        seconds = time.perf_counter() - began
        losses = best_match.cpu()
        finite = bool(torch.isfinite(losses).any())
        winner = int(torch.nan_to_num(losses, nan=math.inf).argmin())
        if progress.enabled:
            progress.show(progress.total, float(losses[winner]))
        images = (best_x[winner] * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)).clamp(0, 1)
        stats = {
            "iterations": cfg.iterations,
            "iterations_run": runs,
            "seconds": seconds,
            "ms_per_iteration": 1000 * seconds / max(1, sum(runs)),
            "loss_curve": curves[winner].cpu().tolist(),
            "restart_losses": losses.tolist(),
            "best_restart": winner,
            "matching_loss": float(losses[winner]),
            "finite": finite,
            "objective": cfg.objective,
            "tv": self.tv,
            "bn_mode": cfg.bn_mode,
            "restarts": cfg.restarts,
            "restart_mode": "sequential" if sequential else "batched",
            "labels": self.label_source,
            "target": _target_kind(self.update, self.unrolls),
            "informed": bool(self.factors),
            "masked": self.matcher.index is not None,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "channels_last": self.channels_last,
            "compiled": cfg.compile,
            "compile_seconds": compile_seconds,
            "seed": cfg.seed,
        }
        return Reconstruction(images=images.detach().cpu(), labels=self.labels.cpu(), stats=stats)


def _target_kind(update: LocalUpdate | None, unrolled: bool) -> str:
    if update is None:
        return "gradient"
    clients = f", mean of {update.clients} clients" if update.clients > 1 else ""
    replayed = ", unrolled" if unrolled else ""
    return f"update ({update.steps} step{'s' if update.steps > 1 else ''}{clients}{replayed})"
