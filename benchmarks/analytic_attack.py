"""The analytic attack (``attacks.METHODS["analytic"]``) on the untrained MLP, every FL/WR/WS combination.

One row per (combination, capture, batch size B): how many of the B images the attack recovers above
30 dB PSNR, their mean PSNR, the lowest, where the images came from (rows dominated by one image /
ICA), label accuracy and seconds. The captures are real client computations: ``gradient`` is the
FL-scaled gradient of one batch (``fedsyn.biomod.scale_gradients``), ``update`` is ``w_local -
w_global`` after one SGD step with FL and WR attached (``fedsyn.biomod.attach``), as
``fedsyn.task.training`` computes them. The model is ``build_model("mlp", 10, seed=0)``
converted with ``convert(model, BiomodConfig.from_combo(combo), seed=0)``; the attacker is oblivious
(no FL factors, no mask) and recovers the labels.

Images: CIFAR-10 test JPEGs, image 0 of class 0, 1, ..., so a batch of B <= 10 has B distinct labels.

    FEDSYN_CIFAR10_DIR=/work/main/.data/cifar10 python benchmarks/analytic_attack.py
    python benchmarks/analytic_attack.py --combos none,fl+wr+ws --batches 1,8 --captures update
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import attacks
from fedsyn.biomod import BiomodConfig, convert
from fedsyn.models import build_model
from fedsyn.task.training import batch_gradient, local_update

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
COMBOS = ("none", "ws", "wr", "wr+ws", "fl", "fl+ws", "fl+wr", "fl+wr+ws")
THRESHOLD_DB = 30.0


def load_images(root: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image 0 of classes 0 .. count-1 of the CIFAR-10 test split, in [0, 1]."""
    test = root / "test"
    if not test.is_dir():
        raise SystemExit(f"no CIFAR-10 test folder at {test}: pass --cifar or set FEDSYN_CIFAR10_DIR")
    classes = sorted(p.name for p in test.iterdir() if p.is_dir())
    images = []
    for name in classes[:count]:
        path = sorted((test / name).glob("*.jpg"))[0]
        images.append(torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1))
    return torch.stack(images), torch.arange(count)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


def capture(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mode: str, lr: float) -> list[torch.Tensor]:
    """What a client sends (the federation's own computations): the FL-scaled gradient, or the update of
    one SGD step with FL and WR attached; aligned with ``model.parameters()``."""
    model = copy.deepcopy(model).train()
    if mode == "gradient":
        signal, _ = batch_gradient(model, normalise(images), labels)
    else:
        signal, *_ = local_update(model, [(normalise(images), labels)], lr)
    return [signal[name] for name, _ in model.named_parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, default=Path(os.environ.get("FEDSYN_CIFAR10_DIR", ".data/cifar10")))
    parser.add_argument("--combos", default=",".join(COMBOS))
    parser.add_argument("--captures", default="gradient,update")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--lr", type=float, default=0.01, help="the client's SGD step size (update capture)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    batches = [int(b) for b in args.batches.split(",")]
    images, labels = load_images(args.cifar, max(batches))
    plain = build_model("mlp", 10, seed=0)
    print(f"{'combo':<9} {'capture':<8} {'B':>2} {'>30dB':>6} {'mean PSNR':>9} {'min PSNR':>8} "
          f"{'sources':<14} {'labels':>6} {'s':>6}")
    for combo in args.combos.split(","):
        config = BiomodConfig.from_combo(combo) if combo != "none" else BiomodConfig()
        model = convert(plain, config, seed=0)
        for mode in args.captures.split(","):
            for count in batches:
                x, y = images[:count], labels[:count]
                target = capture(model, x, y, mode, args.lr)
                update = None if mode == "gradient" else attacks.LocalUpdate(steps=1, lr=args.lr, batch_size=count)
                inputs = attacks.AttackInputs(model=model, target=target, num_images=count, mean=MEAN, std=STD, update=update)
                start = time.perf_counter()
                rec = attacks.run_method("analytic", inputs)
                seconds = time.perf_counter() - start
                scores = attacks.metrics.score(rec.images, x, rec_labels=rec.labels, true_labels=y, lpips=False)
                psnr = [min(float(p["psnr"]), 999.0) for p in scores.per_image]
                sources = rec.stats["sources"]
                origin = f"{sources.count('rows')} rows/{sources.count('ica')} ica"
                print(f"{combo:<9} {mode:<8} {count:>2} {sum(p > THRESHOLD_DB for p in psnr):>3}/{count:<2} "
                      f"{np.mean(psnr):>9.1f} {min(psnr):>8.1f} {origin:<14} {scores['label_acc']:>6.2f} {seconds:>6.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
