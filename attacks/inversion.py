"""Gradient inversion: Inverting Gradients (Geiping et al. 2020), DLG's L2 variant, FedAvg unrolling.

The attack optimises candidate images x (in the model's normalised input space) so that the signal
they would produce, the gradient of the client's loss or its unrolled local update, matches the
captured one (docs/methods.md, "The attack"):

    minimise  D(signal(x), target) + tv * TV(x) [+ bn_prior * R_bn(x)]

with D from :class:`attacks.objectives.Matcher`, Adam on sign(dD/dx), the step size x``gamma`` at
the milestones, x projected into the box [(0 - mean) / std, (1 - mean) / std] after every step. Each
restart keeps its iterate with the lowest objective; across restarts the one with the lowest matching
loss D wins (never the objective with its priors, which would favour the restarts with small weights).
``tv`` may list candidate weights: restart r uses the r-th in turn, so the attacker picks its TV weight
by the matching loss alone. ``R_bn`` is the BatchNorm feature-statistics prior of
:mod:`attacks.bnstats`, on when the attacker knows the client's batch statistics (``bn_stats``).

Stopping and convergence. Beside the budget, two rules end a run: a restart's matching loss at most
``loss_tol``, and a plateau. Let b_t be a restart's best matching loss up to iteration t. The loss has
plateaued at t when, for every restart, b_{t-W} - b_t <= plateau_tol * b_{t-W} with W = ``plateau_window``
and all of t-W .. t at the current step size (checked every few iterations). Only a plateau after the
last milestone stops the run: the schedule before it is kept whole, because a plateau-driven schedule
that cut the large steps short measurably lost quality against breaching at the same budget.
``stats["converged"]`` is true when the run stopped on one of the two rules, or when it used its whole
budget and the plateau condition held over its last W iterations; a run still improving at the end of
its budget is not converged.

Speed. A gradient target with one restart takes the plain autograd route: one forward pass, the
parameter gradient with ``create_graph=True``, the objective on the concatenated gradient, and one
backward pass to the images only. Several restarts run as one vectorised computation: ``torch.func``
computes every restart's parameter gradient (or unrolled update) under ``vmap``, so a batch of R
restarts costs one wider pass instead of R passes (``restart_mode="sequential"`` runs them one after
the other instead, like breaching does).

Compilation. With ``AttackConfig(compile=True)``, or with the default ``"auto"`` when the attack is
large enough (:mod:`attacks.flops`: projected arithmetic against a threshold, never timings), every
target takes the ``torch.func`` route, the image gradient included, and ``torch.compile`` turns one
evaluation (forward, parameter gradient, matching, TV, image gradient) into one inductor graph: the
element-wise work of the double backward pass (BatchNorm, ReLU masks, the cosine) is fused into a few
loops around the convolution calls. The first call compiles (timed apart, ``stats["compile_seconds"]``);
every later call runs the compiled graph.

Memory layout. For a single image on the CPU, PyTorch's convolution heuristics send small NCHW
convolutions to a slow single-threaded path; in channels-last layout they go to oneDNN. On an
untrained ResNet20 with one image this cut the time per iteration by about 12%, on ResNet32 by 18%,
while the ConvNet, whose large convolutions use oneDNN anyway, got 8-16% slower (layout conversions).
``AttackConfig.channels_last=None`` therefore turns it on for one image per restart on the CPU for the
architectures in ``attacks.config.CHANNELS_LAST``. Compiled, channels-last was faster for every model
and batch size measured (ConvNet-32 B=1 -18%, ConvNet-64 B=1 -13%, ResNet20 B=4 -17%, ResNet20 B=1
-21%), so a compiled CPU attack always runs channels-last.
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

from .bnstats import BatchStats, FeatureRecorder, batchnorm_layers, feature_distance
from .config import CHANNELS_LAST, AttackConfig, LocalUpdate
from .flops import auto_compile, evaluation_flops, projected_tflop
from .labels import recover_labels
from .objectives import Matcher, flatten, total_variation
from .progress import Progress
from .replica import last_layer_index, parameter_names, replica, task_loss
from .targets import check_factors, check_target, check_tensors, label_signal, matched_signal, unrolls
from .unroll import unrolled_update

# evaluate(x, tv) -> (objective per restart, matching loss per restart, d objective / dx); tv: (R,) weights
Evaluate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

# How often (in iterations) the loop checks that some restart still has a finite objective.
_FINITE_CHECK = 100
# How often (in iterations) the loop checks the stopping rules (each check waits for the device).
_STOP_CHECK = 25


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
    bn_stats: BatchStats | None = None,
) -> Reconstruction:
    """Reconstruct the ``num_images`` images behind ``target``.

    ``target`` is aligned with ``model.parameters()``: the client's gradient (``update=None``) or its
    update ``w_local - w_global`` after the local training ``update`` describes. ``labels`` are the
    attacker's knowledge of the labels; ``None`` recovers them (``config.label_strategy``).
    ``fl_factors`` (aligned with the parameters, ``None`` for unscaled ones) are the shared FL factors an
    informed attacker knows. ``mean``/``std`` are the per-channel normalisation the model expects;
    ``image_shape`` defaults to (channels, 32, 32). ``mask`` (bool tensors aligned with the parameters,
    ``None`` for "keep all") limits the matching to the entries it keeps. ``bn_stats`` are the
    client's batch (mean, unbiased variance) of every BatchNorm layer's input in module order (see
    :func:`attacks.bnstats.recover_bn_stats`); given, the objective adds ``config.bn_prior`` times the
    feature-statistics prior.
    """
    config = config if config is not None else AttackConfig()
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    device = config.torch_device()
    with _threads(config.threads):
        return _Attack(
            model, target, num_images, labels, mean, std, config, update, fl_factors, image_shape, mask, bn_stats,
            device,
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


@dataclass(frozen=True)
class _Run:
    """One optimisation of one or several (batched) restarts."""

    best_x: torch.Tensor
    best_match: torch.Tensor
    curve: torch.Tensor
    iterations: int
    reason: str  # "plateau", "loss below tolerance", "budget" or "not finite"

    @property
    def converged(self) -> bool:
        return self.reason in ("plateau", "loss below tolerance")


class _Attack:
    """One call of :func:`reconstruct`: the checked inputs, then the restarts."""

    def __init__(self, model, target, num_images, labels, mean, std, config, update, fl_factors, image_shape, mask,
                 bn_stats, device):
        self.config = config
        self.device = device
        self.update = update
        self.num_images = num_images
        self.net = replica(model, config, device)
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
        self.restart_tv = torch.tensor(config.restart_tv(), dtype=torch.float32, device=device)
        self.bn_target = self._bn_target(bn_stats)
        self.recorder = FeatureRecorder(self.net) if self.bn_target is not None else None
        box = (1, 1, channels, 1, 1)
        self.low = ((0 - self.mean) / self.std).view(box)
        self.high = ((1 - self.mean) / self.std).view(box)
        self.compile, self.compile_rule = self._compile_choice()
        self.channels_last = config.channels_last
        if self.channels_last is None:
            eager_gain = num_images == 1 and config.architecture in CHANNELS_LAST
            self.channels_last = device.type == "cpu" and (self.compile or eager_gain)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _compile_choice(self) -> tuple[bool, str]:
        """Whether the objective is compiled, and why (``stats["compile_rule"]``; see :mod:`attacks.flops`)."""
        cfg = self.config
        if cfg.compile != "auto":
            return cfg.compile, f"compile={cfg.compile}"
        steps = self.update.steps if self.unrolls else 1
        flops = evaluation_flops(self.net, self.image_shape, self.num_images)
        return auto_compile(self.device, projected_tflop(flops, cfg.iterations, cfg.restarts, steps))

    def _num_classes(self) -> int:
        try:
            with torch.no_grad():
                out = self.net(torch.zeros(self.num_images, *self.image_shape, device=self.device))
        except RuntimeError as err:
            raise ValueError(f"image_shape {self.image_shape} does not fit the model (pass image_shape=): {err}") from err
        if out.ndim != 2:
            raise ValueError(f"the model must output (batch, classes) logits, got shape {tuple(out.shape)}")
        return out.shape[1]

    def _bn_target(self, bn_stats: BatchStats | None) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        if bn_stats is None:
            return None
        layers = batchnorm_layers(self.net)
        if len(bn_stats) != len(layers):
            raise ValueError(
                f"bn_stats has {len(bn_stats)} (mean, var) pairs but the model has {len(layers)} BatchNorm layers"
            )
        target = []
        for index, (layer, pair) in enumerate(zip(layers, bn_stats)):
            if len(pair) != 2:
                raise ValueError(f"bn_stats[{index}] must be a (mean, var) pair")
            mean, var = (torch.as_tensor(t, dtype=torch.float32).to(self.device) for t in pair)
            if mean.shape != (layer.num_features,) or var.shape != (layer.num_features,):
                raise ValueError(f"bn_stats[{index}] must hold two vectors of {layer.num_features} values, "
                                 f"got shapes {tuple(mean.shape)} and {tuple(var.shape)}")
            if not (torch.isfinite(mean).all() and torch.isfinite(var).all()):
                raise ValueError(f"bn_stats[{index}] contains NaN or Inf")
            target.append((mean, var))
        return target

    def _given_labels(self, labels: torch.Tensor | Sequence[int], classes: int) -> torch.Tensor:
        given = torch.as_tensor(labels).flatten()
        if given.numel() != self.num_images or given.is_floating_point():
            raise ValueError(f"labels must be {self.num_images} integers, got {labels!r}")
        if given.numel() and (int(given.min()) < 0 or int(given.max()) >= classes):
            raise ValueError(f"labels must lie in [0, {classes}), got {given.tolist()}")
        return given.to(device=self.device, dtype=torch.int64)

    # -- the objective ---------------------------------------------------------------------------

    def _prior(self, recorded: BatchStats) -> torch.Tensor:
        """``bn_prior`` times the distance of the recorded feature statistics to the client's."""
        return self.config.bn_prior * feature_distance(recorded, self.bn_target)

    def _precision(self) -> contextlib.AbstractContextManager:
        """The arithmetic of the model evaluations: bfloat16 autocast for ``precision="bf16"``."""
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _autograd_objective(self) -> Evaluate:
        """One restart, gradient target: module autograd with ``create_graph`` w.r.t. the parameters only."""
        params = list(self.net.parameters())
        net, labels, matcher, recorder = self.net, self.labels, self.matcher, self.recorder

        def evaluate(x: torch.Tensor, tv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            images = x[0]
            with self._precision():
                with recorder.recording() if recorder else contextlib.nullcontext() as recorded:
                    logits = net(images)
                loss = F.cross_entropy(logits, labels)
                grads = torch.autograd.grad(loss, params, create_graph=True)
            match = matcher.parts(grads)
            total = match + tv[0] * total_variation(images)
            if recorder:
                total = total + self._prior(recorded)
            (dx,) = torch.autograd.grad(total, x)
            return total.detach().view(1), match.detach().view(1), dx

        return evaluate

    def _functional_objective(self, restarts: int) -> Evaluate:
        """Any target, R restarts at once: ``torch.func`` signals, vectorised over restarts by ``vmap``.

        Purely functional (``torch.func.grad`` also for the image gradient), so that ``torch.compile``
        can trace the whole evaluation into one graph. With the BatchNorm prior, a gradient target reads
        the feature statistics off the forward pass of the gradient (``has_aux``); an unrolled update
        needs one more forward pass at the global weights, the weights the statistics were taken at.
        """
        params = {n: p.detach() for n, p in self.net.named_parameters()}
        net, labels, names, update, factors = self.net, self.labels, self.names, self.update, self.factors
        matcher, replay, recorder = self.matcher, self.unrolls, self.recorder

        def recorded_loss(p: dict[str, torch.Tensor], images: torch.Tensor):
            with recorder.recording() as recorded:
                loss = task_loss(net, p, images, labels)
            return loss, list(recorded)

        def signal(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with self._precision():
                return precise_signal(images)

        def precise_signal(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            prior = images.new_zeros(())
            if replay:
                values = unrolled_update(net, params, images, labels, update, factors)
                if recorder:
                    prior = self._prior(recorded_loss(params, images)[1])
            elif recorder:
                values, recorded = grad(recorded_loss, has_aux=True)(params, images)
                prior = self._prior(recorded)
            else:
                values = grad(lambda p: task_loss(net, p, images, labels))(params)
            return flatten([values[n] for n in names]), prior

        if restarts > 1:
            signals = vmap(signal)
        else:
            def signals(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                flat, prior = signal(x[0])
                return flat.unsqueeze(0), prior.unsqueeze(0)

        def objective(x: torch.Tensor, tv: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            flat, prior = signals(x)
            match = matcher(flat)
            total = match + tv * total_variation(x) + prior
            return total.sum(), (total, match)

        def evaluate(x: torch.Tensor, tv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            dx, (total, match) = grad(objective, has_aux=True)(x, tv)
            return total, match, dx

        return evaluate

    def _objective(self, restarts: int) -> Evaluate:
        if restarts == 1 and not self.unrolls and not self.compile:
            return self._autograd_objective()
        evaluate = self._functional_objective(restarts)
        if self.compile:
            evaluate = torch.compile(evaluate, dynamic=False)
        # The images enter detached: torch.func differentiates on its own, and one compiled graph serves
        # every call because dynamo guards on requires_grad.
        return lambda x, tv: evaluate(x.detach(), tv)

    def _compiled(self, evaluate: Evaluate, start: torch.Tensor, tv: torch.Tensor) -> float:
        """Compile ``evaluate`` by calling it once on ``start``; the seconds it took (0 when not compiling).

        Timed apart from the iterations: inductor compiles the graph once per model and image shape
        (20 to 90 seconds on two CPU cores) and caches the result on disk, so a later run with the same
        model and shapes starts within seconds.
        """
        if not self.compile:
            return 0.0
        began = time.perf_counter()
        try:
            evaluate(start, tv)
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

    def _optimise(self, evaluate: Evaluate, start: torch.Tensor, tv: torch.Tensor, progress: Progress,
                  done_before: int) -> _Run:
        cfg = self.config
        x = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=cfg.lr)
        milestones = [max(1, int(cfg.iterations * f)) for f in cfg.milestones]
        restarts = start.shape[0]
        best_x = start.clone()
        best_total = torch.full((restarts,), math.inf, device=self.device)
        best_match = torch.full((restarts,), math.inf, device=self.device)
        curve = torch.full((cfg.iterations, restarts), math.nan, device=self.device)
        # lowest matching loss so far, per restart: history[t] after t iterations
        history = torch.full((cfg.iterations + 1, restarts), math.inf, device=self.device)
        phase, phase_start, run, reason = 0, 0, 0, "budget"
        for iteration in range(cfg.iterations):
            scheduled = sum(m <= iteration for m in milestones)
            if scheduled > phase:
                phase, phase_start = scheduled, iteration
            for group in optimiser.param_groups:
                group["lr"] = cfg.lr * cfg.gamma**phase
            total, match, dx = evaluate(x, tv)
            curve[iteration] = total
            better = total < best_total
            best_total = torch.where(better, total, best_total)
            best_match = torch.where(better, match, best_match)
            best_x = torch.where(better.view(-1, 1, 1, 1, 1), x.detach(), best_x)
            history[iteration + 1] = torch.minimum(history[iteration], match.detach())
            x.grad = dx.sign() if cfg.signed else dx
            optimiser.step()
            if cfg.boxed:
                with torch.no_grad():
                    x.clamp_(min=self.low, max=self.high)
            run = iteration + 1
            if progress.due():
                progress.show(done_before + run, float(total.min()))
            if run % _FINITE_CHECK == 0 and not torch.isfinite(total).any():
                reason = "not finite"
                break
            if run % _STOP_CHECK == 0 and run < cfg.iterations:
                if bool((history[run] <= cfg.loss_tol).any()):
                    reason = "loss below tolerance"
                    break
                if phase == len(milestones) and self._plateau(history, run, phase_start):
                    reason = "plateau"
                    break
        if reason == "budget" and (bool((history[run] <= cfg.loss_tol).any()) or self._plateau(history, run, 0)):
            reason = "plateau" if self._plateau(history, run, 0) else "loss below tolerance"
        return _Run(best_x, best_match, curve[:run], run, reason)

    def _plateau(self, history: torch.Tensor, run: int, since: int) -> bool:
        """Whether no restart's best matching loss improved by more than ``plateau_tol`` (relative) over
        the last ``plateau_window`` iterations, all of them at or after iteration ``since``."""
        window = self.config.plateau_window
        if window is None or run - window < since:
            return False
        before, now = history[run - window], history[run]
        return bool((before - now <= self.config.plateau_tol * before.abs()).all())

    def run(self) -> Reconstruction:
        cfg = self.config
        start = self._initial()
        sequential = cfg.restart_mode == "sequential" and cfg.restarts > 1
        progress = Progress(cfg.iterations * (cfg.restarts if sequential else 1), enabled=cfg.progress)
        evaluate = self._objective(1 if sequential else cfg.restarts)
        tv = self.restart_tv
        compile_seconds = self._compiled(evaluate, start[:1] if sequential else start, tv[:1] if sequential else tv)
        began = time.perf_counter()
        if sequential:
            runs = [
                self._optimise(evaluate, start[r : r + 1], tv[r : r + 1], progress, r * cfg.iterations)
                for r in range(cfg.restarts)
            ]
            best_x = torch.cat([r.best_x for r in runs])
            best_match = torch.cat([r.best_match for r in runs])
            curves = [r.curve[:, 0] for r in runs]
        else:
            batched = self._optimise(evaluate, start, tv, progress, 0)
            best_x, best_match = batched.best_x, batched.best_match
            curves = list(batched.curve.T)
            runs = [batched] * cfg.restarts
        seconds = time.perf_counter() - began
        losses = best_match.cpu()
        finite = bool(torch.isfinite(losses).any())
        winner = int(torch.nan_to_num(losses, nan=math.inf).argmin())
        if progress.enabled:
            progress.show(progress.total, float(losses[winner]))
        images = (best_x[winner] * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)).clamp(0, 1)
        restart_tv = tv.cpu().tolist()
        stats = {
            "iterations": cfg.iterations,
            "iterations_run": [r.iterations for r in runs],
            "converged": runs[winner].converged,
            "stop_reason": runs[winner].reason,
            "seconds": seconds,
            "ms_per_iteration": 1000 * seconds / max(1, sum(r.iterations for r in runs)),
            "loss_curve": curves[winner].cpu().tolist(),
            "restart_losses": losses.tolist(),
            "best_restart": winner,
            "matching_loss": float(losses[winner]),
            "finite": finite,
            "objective": cfg.objective,
            "tv": restart_tv[winner],
            "restart_tv": restart_tv,
            "bn_prior": cfg.bn_prior if self.bn_target is not None else None,
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
            "compiled": self.compile,
            "compile_rule": self.compile_rule,
            "compile_seconds": compile_seconds,
            "precision": cfg.precision,
            "seed": cfg.seed,
        }
        return Reconstruction(images=images.detach().cpu(), labels=self.labels.cpu(), stats=stats)


def _target_kind(update: LocalUpdate | None, unrolled: bool) -> str:
    if update is None:
        return "gradient"
    clients = f", mean of {update.clients} clients" if update.clients > 1 else ""
    replayed = ", unrolled" if unrolled else ""
    return f"update ({update.steps} step{'s' if update.steps > 1 else ''}{clients}{replayed})"
