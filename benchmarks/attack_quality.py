"""Quality and speed of attacks.reconstruct on untrained models and CIFAR-10 test images.

One table row per setting (model, batch size): PSNR, SSIM, LPIPS (when the AlexNet weights are on
disk), label accuracy, ms per iteration. The defaults are the issue's: 2,000 iterations, untrained
convnet (width 32 and 64, B=1), resnet20 (B=1 and B=4), resnet32 (B=1), BatchNorm in eval mode,
labels recovered by the attack itself, each model's default total variation (attacks.DEFAULT_TV).

``--reference`` also times a breaching-style iteration on the same model and gradient (the per-step
work of breaching's ``invertinggradients``: forward, parameter gradient with create_graph, cosine
summed parameter by parameter, padded TV, backward to the images, sign, Adam, step schedule, box
projection, best-iterate copy) in alternating blocks with ours, so that both see the same machine
load; the ``ratio`` column is ours / reference, the median over blocks.

Images: image 0, 1, ... of the test split's classes 0, 1, ... (one class per image), read from
``<cifar>/test/<class>/*.jpg`` and normalised with CIFAR-10's usual training-set statistics.

    python benchmarks/attack_quality.py                                # the full table (minutes)
    python benchmarks/attack_quality.py --iterations 200 --settings convnet32:1 --reference
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
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


def load_images(root: Path, count: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = root / "test"
    if not test.is_dir():
        raise SystemExit(f"no CIFAR-10 test folder at {test}: pass --cifar or set FEDSYN_CIFAR10_DIR")
    classes = sorted(p.name for p in test.iterdir() if p.is_dir())
    images = []
    for index in range(count):
        files = sorted((test / classes[index % len(classes)]).glob("*.jpg"))
        array = np.asarray(Image.open(files[offset + index // len(classes)]).convert("RGB"), dtype=np.float32)
        images.append(torch.from_numpy(array / 255).permute(2, 0, 1))
    return torch.stack(images), torch.arange(count) % len(classes)


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


def reference_ms(model, target, labels, batch: int, iterations: int, tv: float) -> float:
    """ms per iteration of a breaching-style invertinggradients loop (see the module docstring)."""
    params = list(model.parameters())
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    kernel = torch.tensor([[0, 0, 0], [0, -1, 1], [0, 0, 0]], dtype=torch.float32).view(1, 1, 3, 3)
    kernel = torch.cat([kernel.transpose(2, 3), kernel] * 3)
    candidate = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    optimiser = torch.optim.Adam([candidate], lr=0.1)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, [iterations * 3 // 8, iterations * 5 // 8, iterations * 7 // 8], 0.1)
    best, best_value = candidate.detach().clone(), float("inf")
    start = time.perf_counter()
    for _ in range(iterations):
        optimiser.zero_grad()
        model.zero_grad()
        loss = F.cross_entropy(model(candidate), labels)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot, rec_norm, data_norm = 0, 0, 0
        for rec, data in zip(grads, target):
            dot = dot + (rec * data).sum()
            rec_norm = rec_norm + rec.pow(2).sum()
            data_norm = data_norm + data.pow(2).sum()
        objective = 1 - dot / rec_norm.sqrt() / data_norm.sqrt()
        diffs = F.conv2d(candidate, kernel, padding=1, groups=3).abs()
        objective = objective + tv * (diffs[:, 0::2] + diffs[:, 1::2]).mean()
        objective.backward(inputs=[candidate])
        candidate.grad.sign_()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            candidate.data = torch.max(torch.min(candidate, (1 - mean) / std), -mean / std)
            if objective.item() < best_value:
                best_value, best = objective.item(), candidate.detach().clone()
    return 1000 * (time.perf_counter() - start) / iterations


def run_setting(setting: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    name, model, batch = build(setting)
    images, labels = load_images(root, batch, args.offset)
    target = gradient(model, images, labels)
    tv = args.tv if args.tv is not None else attacks.default_tv(name)
    config = attacks.AttackConfig(iterations=args.iterations, tv=tv, bn_mode="eval", architecture=name,
                                  threads=args.threads, progress=args.progress)
    given = labels if args.labels == "known" else None
    rec = attacks.reconstruct(model, target, num_images=batch, labels=given, mean=MEAN, std=STD, config=config)
    scores = attacks.metrics.score(rec.images, images, rec_labels=rec.labels, true_labels=labels,
                                   lpips=args.lpips if args.lpips != "off" else False)
    row: dict[str, object] = {
        "setting": f"{setting.split(':')[0]} B={batch}", "tv": tv, "psnr": scores["psnr"], "ssim": scores["ssim"],
        "lpips": scores.get("lpips", float("nan")), "label_acc": scores["label_acc"],
        "ms_it": rec.stats["ms_per_iteration"], "lpips_missing": scores.missing.get("lpips"),
    }
    if args.reference:
        ours, theirs = [], []
        short = attacks.AttackConfig(iterations=args.reference_iterations, tv=tv, threads=args.threads)
        for _ in range(args.rounds):
            theirs.append(reference_ms(model, target,
                                       labels, batch, args.reference_iterations, tv))
            quick = attacks.reconstruct(model, target, num_images=batch, labels=labels, mean=MEAN, std=STD, config=short)
            ours.append(quick.stats["ms_per_iteration"])
        row["ref_ms_it"] = statistics.median(theirs)
        row["ratio"] = statistics.median(o / t for o, t in zip(ours, theirs))
        row["spread"] = (min(o / t for o, t in zip(ours, theirs)), max(o / t for o, t in zip(ours, theirs)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default=os.environ.get("FEDSYN_CIFAR10_DIR", "/tmp/cifar10_unz"))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated model:batch (convnetW = width W)")
    parser.add_argument("--tv", type=float, default=None, help="override every model's default TV weight")
    parser.add_argument("--labels", choices=("recovered", "known"), default="recovered")
    parser.add_argument("--offset", type=int, default=0, help="which image of each class to use")
    parser.add_argument("--lpips", default="auto", help="'auto', a path to alexnet-owt-7be5be79.pth, or 'off'")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reference", action="store_true", help="also time a breaching-style loop (see docstring)")
    parser.add_argument("--reference-iterations", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    root = Path(args.cifar)
    header = f"{'setting':<14} {'tv':>7} {'PSNR':>6} {'SSIM':>6} {'LPIPS':>6} {'labels':>6} {'ms/it':>7}"
    if args.reference:
        header += f" {'ref ms/it':>9} {'ratio':>6} {'(min-max)':>11}"
    print(f"attack quality: {args.iterations} iterations, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(header)
    missing = set()
    for setting in args.settings.split(","):
        row = run_setting(setting, args, root)
        line = (f"{row['setting']:<14} {row['tv']:>7.0e} {row['psnr']:>6.2f} {row['ssim']:>6.3f} {row['lpips']:>6.3f} "
                f"{row['label_acc']:>6.2f} {row['ms_it']:>7.1f}")
        if args.reference:
            low, high = row["spread"]
            line += f" {row['ref_ms_it']:>9.1f} {row['ratio']:>6.2f} {f'{low:.2f}-{high:.2f}':>11}"
        print(line, flush=True)
        if row["lpips_missing"]:
            missing.add(row["lpips_missing"])
    for reason in missing:
        print(f"LPIPS missing: {reason}")


if __name__ == "__main__":
    main()
