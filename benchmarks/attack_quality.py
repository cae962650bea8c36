"""Quality and speed of attacks.reconstruct on untrained models and CIFAR-10 test images, against breaching.

One table row per setting (model, batch size), averaged over ``--images`` batches: PSNR, SSIM, LPIPS
(when the AlexNet weights are on disk), label accuracy, ms per iteration, and, when compiling, the
one-off compilation seconds. The defaults are the issue's: 2,000 iterations, untrained convnet (width
32 and 64, B=1), resnet20 (B=1 and B=4), resnet32 (B=1), BatchNorm in eval mode, each model's default
total variation (attacks.DEFAULT_TV), ``AttackConfig(compile=True)``.

``--reference`` also runs JonasGeiping/breaching's ``invertinggradients`` attack (the breaching 0.1.2
package from PyPI, installed by ``make install-bench``) on the same model, gradient, labels and budget:
its own configuration with only ``max_iterations`` and the TV weight overridden (``--reference-tv``,
default: breaching's better setting per model, REFERENCE_TV), BatchNorm in eval mode (the server's
buffers in its payload), scored like ours. Ours and breaching alternate batch by batch so that both see
the same machine load; the ``ratio`` column is our time per iteration over breaching's, the median over
batches. Compilation is not in our ms/it (it is its own column, and cached on disk for later runs).

``--precision bf16`` runs our attack with ``AttackConfig(precision="bf16")`` (convolutions and matrix
products in bfloat16; breaching stays fp32), so the ratio then compares arithmetic of two precisions: read
it together with the PSNR columns. ``--threads N`` sets the thread count of the whole process, ours and
breaching's alike.

``--tv`` takes one weight or a comma-separated list of candidates: with a list the restarts (``--restarts``,
default one per candidate) share the candidates out and the attack keeps the restart with the lowest
matching loss, so the ``tv`` column then shows the weights chosen. ``--device cuda`` runs our attack on
the GPU (breaching stays on the CPU). The ``conv`` column is the fraction of batches whose attack
converged (``Reconstruction.stats["converged"]``), ``its`` the mean iterations run.

The FLOP limit: ``GFLOP`` is the arithmetic of one eager evaluation of the objective (forward pass,
parameter gradient with ``create_graph``, backward pass to the images), counted by
``attacks.flops.evaluation_flops`` (two FLOPs per multiply-add, convolutions and matrix products);
``limit`` is that count over the fp32 matrix-product rate measured right before the setting (best of
five 1024 x 1024 products at the same thread count, printed per row as ``GF/s``), the time the iteration
would take if it ran at that rate; ``x lim`` is our ms per iteration over the limit.

Images, from ``<cifar>/test/<class>/*.jpg``: the sequence image 0 of class 0, 1, ..., 9, then image 1 of
each class, and so on; batch k of size B is its entries kB .. kB + B - 1 (so B=1 batches are one
airplane, one automobile, one bird, ...). Normalised with CIFAR-10's usual training statistics.

    make install-bench
    python benchmarks/attack_quality.py --reference                    # the full table (about an hour)
    python benchmarks/attack_quality.py --iterations 200 --images 1 --settings convnet32:1 --reference
    python benchmarks/attack_quality.py --iterations 300 --images 2 --settings resnet20:4 --tv 1e-4,1e-2,0.2
    python benchmarks/attack_quality.py --threads 1 --precision bf16 --settings convnet32:1,convnet64:1 --reference
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import attacks
from fedsyn.models import build_model

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
DEFAULT_SETTINGS = "convnet32:1,convnet64:1,resnet20:1,resnet20:4,resnet32:1"
# breaching's better total-variation weight per model, measured with breaching itself on this machine kind
# (issue 6): 1e-4 on the ConvNet (about 30 dB against 19 dB at its default 0.2); on the ResNets 1e-4 does
# no better than the default 0.2.
REFERENCE_TV = {"convnet": 1e-4}


def load_images(root: Path, count: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``start .. start + count - 1`` of the sequence that takes image 0 of every class in class
    order, then image 1 of every class, and so on."""
    test = root / "test"
    if not test.is_dir():
        raise SystemExit(f"no CIFAR-10 test folder at {test}: pass --cifar or set FEDSYN_CIFAR10_DIR")
    classes = sorted(p.name for p in test.iterdir() if p.is_dir())
    images = []
    positions = range(start, start + count)
    for position in positions:
        files = sorted((test / classes[position % len(classes)]).glob("*.jpg"))
        array = np.asarray(Image.open(files[position // len(classes)]).convert("RGB"), dtype=np.float32)
        images.append(torch.from_numpy(array / 255).permute(2, 0, 1))
    return torch.stack(images), torch.tensor(list(positions)) % len(classes)


def build(setting: str) -> tuple[str, torch.nn.Module, int]:
    name, batch = setting.split(":")
    if name.startswith("convnet") and name != "convnet":
        model = build_model("convnet", 10, seed=0, width=int(name[len("convnet"):]))
        name = "convnet"
    else:
        model = build_model(name, 10, seed=0)
    return name, model.eval(), int(batch)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


def gradient(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    loss = F.cross_entropy(model(normalise(images)), labels)
    return [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]


def matmul_rate() -> float:
    """FLOP/s of fp32 1024 x 1024 matrix products at the current thread count, best of five."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * 1024**3 / best


def breaching_attack(model, target, labels, iterations: int, tv: float, device: str) -> tuple[torch.Tensor, float]:
    """breaching's ``invertinggradients`` on ``target``, on ``device`` like ours: images in [0, 1] and ms per
    iteration.

    The timing covers its whole ``reconstruct`` call (the model copy and the final scoring are a few
    milliseconds next to 2,000 iterations)."""
    try:
        import breaching
        from omegaconf import OmegaConf
    except ImportError as err:
        raise SystemExit(f"--reference needs the breaching package ({err}): run `make install-bench`") from err
    logging.getLogger("breaching").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it prints and warns about hydra
        warnings.simplefilter("ignore")
        config = breaching.get_attack_config("invertinggradients", overrides=[
            f"optim.max_iterations={iterations}", f"regularization.total_variation.scale={tv}",
            f"optim.callback={iterations + 1}",
        ])
    setup = dict(dtype=torch.float, device=torch.device(device))
    attacker = breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), config, setup)
    metadata = OmegaConf.create(dict(shape=[3, 32, 32], mean=list(MEAN), std=list(STD), modality="vision", classes=10))
    payload = [dict(parameters=[p.detach() for p in model.parameters()], buffers=list(model.buffers()), metadata=metadata)]
    shared = [dict(gradients=[t.to(device) for t in target], buffers=None,
                   metadata=dict(num_data_points=len(labels), labels=labels.to(device), local_hyperparams=None))]
    torch.manual_seed(0)  # breaching draws its initial images from the global generator
    start = time.perf_counter()
    result, _ = attacker.reconstruct(payload, shared, {}, dryrun=False)
    seconds = time.perf_counter() - start
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    return (result["data"].cpu() * std + mean).clamp(0, 1), 1000 * seconds / iterations


def run_batch(name: str, model: torch.nn.Module, batch: int, index: int, args: argparse.Namespace,
              root: Path) -> dict[str, float | str | None]:
    """Our attack (and the reference, with ``--reference``) on batch ``index``; scores and ms per iteration."""
    images, labels = load_images(root, batch, index * batch)
    target = gradient(model, images, labels)
    tv = args.tv if args.tv is not None else attacks.default_tv(name)
    restarts = args.restarts if args.restarts is not None else (len(tv) if isinstance(tv, tuple) else 1)
    config = attacks.AttackConfig(iterations=args.iterations, tv=tv, restarts=restarts, bn_mode="eval",
                                  architecture=name, threads=args.threads, progress=args.progress,
                                  compile={"on": True, "off": False}.get(args.compile, "auto"),
                                  precision=args.precision, device=args.device)
    given = labels if args.labels == "known" else None
    lpips = args.lpips if args.lpips != "off" else False
    rec = attacks.reconstruct(model, target, num_images=batch, labels=given, mean=MEAN, std=STD, config=config)
    scores = attacks.metrics.score(rec.images, images, rec_labels=rec.labels, true_labels=labels, lpips=lpips)
    result: dict[str, float | str | None] = {
        "tv": rec.stats["tv"], "converged": float(rec.stats["converged"]),
        "iterations_run": float(max(rec.stats["iterations_run"])),
        "psnr": scores["psnr"], "ssim": scores["ssim"], "lpips": scores.get("lpips", float("nan")),
        "label_acc": scores["label_acc"], "ms_it": rec.stats["ms_per_iteration"],
        "compile_s": rec.stats["compile_seconds"],
        "lpips_missing": scores.missing.get("lpips"),
    }
    if args.reference:
        ref_tv = args.reference_tv if args.reference_tv is not None else REFERENCE_TV.get(name, 0.2)
        ref_images, ref_ms = breaching_attack(model, target, labels, args.iterations, ref_tv, args.device)
        ref_scores = attacks.metrics.score(ref_images, images, lpips=False)
        result.update(ref_tv=ref_tv, ref_psnr=ref_scores["psnr"], ref_ms_it=ref_ms)
    return result


def run_setting(setting: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    name, model, batch = build(setting)
    flops = attacks.flops.evaluation_flops(model, (3, 32, 32), batch)
    rate = matmul_rate()
    runs = [run_batch(name, model, batch, args.first + k, args, root) for k in range(args.images)]
    row: dict[str, object] = {"setting": f"{setting.split(':')[0]} B={batch}",
                              "tv": "/".join(f"{r['tv']:.0e}" for r in runs), "lpips_missing": runs[0]["lpips_missing"]}
    for key in ("psnr", "ssim", "lpips", "label_acc", "ms_it", "compile_s", "converged", "iterations_run"):
        row[key] = statistics.mean(float(r[key]) for r in runs)
    row["gflop"], row["rate"] = flops / 1e9, rate / 1e9
    row["limit_ms"] = 1000 * flops / rate
    row["x_limit"] = row["ms_it"] / row["limit_ms"]
    row["psnr_each"] = [float(r["psnr"]) for r in runs]
    if args.reference:
        row["ref_tv"] = runs[0]["ref_tv"]
        row["ref_psnr"] = statistics.mean(float(r["ref_psnr"]) for r in runs)
        row["ref_psnr_each"] = [float(r["ref_psnr"]) for r in runs]
        row["ref_ms_it"] = statistics.mean(float(r["ref_ms_it"]) for r in runs)
        row["ratio"] = statistics.median(float(r["ms_it"]) / float(r["ref_ms_it"]) for r in runs)
    return row


def _weights(text: str) -> float | tuple[float, ...]:
    weights = tuple(float(w) for w in text.split(","))
    return weights[0] if len(weights) == 1 else weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default=os.environ.get("FEDSYN_CIFAR10_DIR", ".data/cifar10"))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated model:batch (convnetW = width W)")
    parser.add_argument("--images", type=int, default=3, help="batches per setting")
    parser.add_argument("--tv", type=_weights, default=None,
                        help="override every model's default TV weight: one weight, or comma-separated candidates")
    parser.add_argument("--restarts", type=int, default=None, help="restarts (default: one per TV candidate)")
    parser.add_argument("--device", default="cpu", help="our attack's device: cpu, cuda or cuda:N")
    parser.add_argument("--labels", choices=("recovered", "known"), default="known")
    parser.add_argument("--first", type=int, default=0, help="index of the first batch")
    parser.add_argument("--lpips", default="auto", help="'auto', a path to alexnet-owt-7be5be79.pth, or 'off'")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for ours and breaching alike")
    parser.add_argument("--compile", choices=("on", "off", "auto"), default="on",
                        help="AttackConfig.compile for our attack (auto: the product's default rule)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="AttackConfig.precision for our attack (breaching always runs fp32)")
    parser.add_argument("--reference", action="store_true", help="also run breaching's attack (see docstring)")
    parser.add_argument("--reference-tv", type=float, default=None,
                        help="the reference's TV weight; default: breaching's better setting per model (REFERENCE_TV)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    if args.threads:  # the whole process: breaching and the matrix-product rate run at the same count as ours
        torch.set_num_threads(args.threads)
    root = Path(args.cifar)
    header = (f"{'setting':<14} {'tv':>15} {'PSNR':>6} {'SSIM':>6} {'LPIPS':>6} {'labels':>6} {'ms/it':>7} "
              f"{'compile s':>9} {'conv':>5} {'its':>6} {'GFLOP':>6} {'GF/s':>5} {'limit':>6} {'x lim':>5}")
    if args.reference:
        header += f" {'br tv':>7} {'br PSNR':>8} {'br ms/it':>9} {'ratio':>6}"
    print(f"attack quality: {args.iterations} iterations, {args.images} batch(es) per setting, labels {args.labels}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, compile {args.compile}, "
          f"precision {args.precision}, device {args.device}")
    print(header)
    missing = set()
    for setting in args.settings.split(","):
        row = run_setting(setting, args, root)
        line = (f"{row['setting']:<14} {row['tv']:>15} {row['psnr']:>6.2f} {row['ssim']:>6.3f} {row['lpips']:>6.3f} "
                f"{row['label_acc']:>6.2f} {row['ms_it']:>7.1f} {row['compile_s']:>9.1f} {row['converged']:>5.2f} "
                f"{row['iterations_run']:>6.0f} {row['gflop']:>6.2f} {row['rate']:>5.0f} {row['limit_ms']:>6.1f} "
                f"{row['x_limit']:>5.1f}")
        if args.reference:
            line += f" {row['ref_tv']:>7.0e} {row['ref_psnr']:>8.2f} {row['ref_ms_it']:>9.1f} {row['ratio']:>6.2f}"
        print(line, flush=True)
        each = ", ".join(f"{p:.1f}" for p in row["psnr_each"])
        if args.reference:
            each += " | breaching " + ", ".join(f"{p:.1f}" for p in row["ref_psnr_each"])
        print(f"  PSNR per batch: {each}", flush=True)
        if row["lpips_missing"]:
            missing.add(row["lpips_missing"])
    for reason in missing:
        print(f"LPIPS missing: {reason}")


if __name__ == "__main__":
    main()
