"""What the BatchNorm statistics prior adds to Inverting Gradients against clients training in train mode.

The client holds a batch of CIFAR-10 test images (the sequence of ``attack_quality.py``), trains its
untrained model with BatchNorm on batch statistics, and the server captures the gradient together with
the running buffers before and after the step. The attacker recovers every BatchNorm layer's batch mean
and variance from the buffers (``attacks.bnstats.recover_bn_stats``, exact for one step) and attacks in
``bn_mode="train"`` with and without the feature-statistics prior (``AttackConfig.bn_prior``). Labels
known, each model's default TV weight, default stopping rules. One row per (setting, prior): mean PSNR
over ``--images`` batches, the PSNR per batch, the fraction of converged attacks and ms per iteration.

    python benchmarks/bn_prior.py                                   # ConvNet-32 and ResNet20, B = 1 and 8
    python benchmarks/bn_prior.py --settings convnet32:1 --iterations 200 --images 1
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from attack_quality import MEAN, STD, build, load_images, normalise

import attacks
from attacks.bnstats import batchnorm_layers, recover_bn_stats

DEFAULT_SETTINGS = "convnet32:1,convnet32:8,resnet20:1,resnet20:8"


def client_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, lr: float = 0.1):
    """One local SGD step in train mode: the gradient and the batch statistics recovered from the buffers."""
    local = copy.deepcopy(model).train()
    layers = batchnorm_layers(local)
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    loss = F.cross_entropy(local(normalise(images)), labels)
    gradient = [g.detach() for g in torch.autograd.grad(loss, list(local.parameters()))]
    after = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    return gradient, recover_bn_stats(before, after, [m.momentum for m in layers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default=os.environ.get("FEDSYN_CIFAR10_DIR", ".data/cifar10"))
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated model:batch (convnetW = width W)")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--images", type=int, default=2, help="batches per setting")
    parser.add_argument("--weight", type=float, default=attacks.AttackConfig().bn_prior, help="bn_prior weight")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    root = Path(args.cifar)
    print(f"BatchNorm prior: {args.iterations} iterations, {args.images} batch(es) per setting, train-mode BatchNorm, "
          f"labels known, prior weight {args.weight}, device {args.device}, torch {torch.__version__}")
    print(f"{'setting':<14} {'prior':>6} {'PSNR':>6} {'conv':>5} {'its':>6} {'ms/it':>7}  PSNR per batch")
    for setting in args.settings.split(","):
        name, model, batch = build(setting)
        captures = []
        for k in range(args.images):
            images, labels = load_images(root, batch, k * batch)
            captures.append((images, labels, *client_step(model, images, labels)))
        for prior in (False, True):
            rows = []
            for images, labels, gradient, stats in captures:
                config = attacks.AttackConfig(iterations=args.iterations, bn_mode="train", architecture=name,
                                              bn_prior=args.weight, threads=args.threads, device=args.device)
                rec = attacks.reconstruct(model, gradient, num_images=batch, labels=labels, mean=MEAN, std=STD,
                                          config=config, bn_stats=stats if prior else None)
                psnr = attacks.metrics.score(rec.images, images, lpips=False)["psnr"]
                rows.append((psnr, rec.stats["converged"], max(rec.stats["iterations_run"]), rec.stats["ms_per_iteration"]))
            each = ", ".join(f"{r[0]:.1f}" for r in rows)
            print(f"{setting.split(':')[0] + ' B=' + str(batch):<14} {'on' if prior else 'off':>6} "
                  f"{statistics.mean(r[0] for r in rows):>6.2f} {statistics.mean(r[1] for r in rows):>5.2f} "
                  f"{statistics.mean(r[2] for r in rows):>6.0f} {statistics.mean(r[3] for r in rows):>7.1f}  {each}",
                  flush=True)


if __name__ == "__main__":
    main()
