"""The imprint attack (Fowl et al. 2022) against ResNet20 and ConvNet clients with and without FL/WR/WS.

The server wraps an untrained base model with an imprint block (``fedsyn.models.imprint``) whose
thresholds are the empirical quantiles of the brightness of public CIFAR-10 test images (disjoint from
the clients' images). Each of ``--clients`` clients converts the model it receives with its FL/WR/WS
setting (its own seed), takes one real SGD step (``fedsyn.biomod.attach``) on its batch of ``--batch``
CIFAR-10 test images in train mode and sends ``w_local - w_global``. The server runs
``attacks.imprint`` on each update:

- oblivious: the block is designed for a plain model and the update is read as it is;
- informed: the block is designed for the clients' WS factor (``ws_gamma``) and the attack divides out
  the clients' FL factors and drops entries that the WR likelihood test flags (``attacks.informed``).

Recovered images are paired with the client's true ones by the Hungarian algorithm on the MSE; a row
gives, per client, the images recovered above 30 dB, and the mean PSNR of those recovered images.

    python benchmarks/imprint_attack.py                     # both models, all 8 combinations
    python benchmarks/imprint_attack.py --models convnet --combos none,fl+wr+ws
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

from attacks.imprint import recover
from attacks.informed import rejuvenation_mask
from attacks.pairing import mse_matrix
from fedsyn.biomod import COMBOS, BiomodConfig, convert, converted_layers, fuzzy_factors
from fedsyn.models import ImprintModel, ImprintSpec, build_model, empirical_thresholds
from fedsyn.task.training import local_update

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
RECOVERED_DB = 30.0


def load_images(root: Path, count: int, start: int) -> torch.Tensor:
    """Test images ``start .. start + count - 1`` of the sequence image 0 of each class, image 1 of each ..."""
    test = root / "test"
    if not test.is_dir():
        raise SystemExit(f"no CIFAR-10 test folder at {test}: pass --cifar or set FEDSYN_CIFAR10_DIR")
    classes = sorted(p.name for p in test.iterdir() if p.is_dir())
    files = {name: sorted((test / name).glob("*.jpg")) for name in classes}
    images = []
    for position in range(start, start + count):
        path = files[classes[position % len(classes)]][position // len(classes)]
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        images.append(torch.from_numpy(pixels).permute(2, 0, 1))
    return torch.stack(images)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


def client_update(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, lr: float) -> list[torch.Tensor]:
    """One SGD step of the converted ``model`` (FL and WR attached), as the federation's clients take it;
    returns ``w_local - w_global`` aligned with ``model.parameters()``."""
    update, *_ = local_update(model, [(normalise(images), labels)], lr)
    return [update[name] for name, _ in model.named_parameters()]


def informed_knowledge(
    model: torch.nn.Module, update: list[torch.Tensor], global_weights: list[torch.Tensor], config: BiomodConfig
) -> tuple[list[torch.Tensor | None] | None, list[torch.Tensor] | None]:
    """The FL factors and WR keep-mask an informed server holds, aligned with the parameters."""
    names = [name for name, _ in model.named_parameters()]
    factors = fuzzy_factors(model)
    fl = [factors.get(name) for name in names] if factors else None
    if not config.wr:
        return fl, None
    bounds: dict[str, float] = {
        f"{name}.weight": 1 / float(np.sqrt(layer.weight[0].numel())) for name, layer in converted_layers(model)
    }
    mask = rejuvenation_mask(update, global_weights, [bounds.get(name) for name in names], d_re=config.d_re)
    return fl, mask


def score(recovered: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    """PSNR of each true image against its Hungarian partner (0 dB for images left without one)."""
    psnr = np.zeros(len(true))
    if len(recovered):
        mse = mse_matrix(recovered, true).numpy()
        rows, cols = linear_sum_assignment(mse)
        psnr[rows] = 10 * np.log10(1 / np.maximum(mse[rows, cols], 1e-20))
    return psnr


def run_cell(name: str, combo: str, informed: bool, args: argparse.Namespace, public: torch.Tensor,
             batches: list[torch.Tensor]) -> tuple[list[int], list[float]]:
    config = BiomodConfig.from_combo(combo)
    spec = ImprintSpec(bins=args.bins, ws_gamma=config.gamma if (informed and config.ws) else 1,
                       copies=args.copies, alpha=args.alpha, output_scale=args.output_scale)
    server_model = ImprintModel(build_model(name, 10, seed=0), spec, (3, 32, 32),
                                thresholds=empirical_thresholds(spec, normalise(public)))
    counts, psnrs = [], []
    for client, images in enumerate(batches):
        model = convert(server_model, config, seed=client + 1).train()
        global_weights = [p.detach().clone() for p in model.parameters()]
        labels = torch.arange(client, client + len(images)) % 10
        update = client_update(model, images, labels, args.lr)
        fl, mask = informed_knowledge(model, update, global_weights, config) if informed else (None, None)
        result = recover(server_model, update, num_images=len(images), mean=MEAN, std=STD,
                         fl_factors=fl, mask=mask, is_update=True)
        psnr = score(result.images, images)
        good = psnr[psnr > RECOVERED_DB]
        counts.append(len(good))
        psnrs.extend(good.tolist())
    return counts, psnrs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, default=os.environ.get("FEDSYN_CIFAR10_DIR"))
    parser.add_argument("--models", default="resnet20,convnet")
    parser.add_argument("--combos", default=",".join(COMBOS))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--bins", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--copies", type=int, default=1, help="ImprintSpec.copies (rows per threshold)")
    parser.add_argument("--alpha", type=float, default=ImprintSpec().alpha, help="ImprintSpec.alpha")
    parser.add_argument(
        "--output-scale", type=float, default=ImprintSpec().output_scale, help="ImprintSpec.output_scale"
    )
    parser.add_argument("--public", type=int, default=1000, help="public images for the thresholds")
    args = parser.parse_args()
    if args.cifar is None:
        raise SystemExit("pass --cifar or set FEDSYN_CIFAR10_DIR")
    torch.manual_seed(0)
    clients = load_images(args.cifar, args.clients * args.batch, 0)
    batches = list(clients.split(args.batch))
    public = load_images(args.cifar, args.public, 5000)
    print(f"imprint attack: {args.clients} clients x batch {args.batch}, {args.bins} bins x {args.copies} copies, "
          f"alpha {args.alpha:g}, output scale {args.output_scale:g}, one SGD step at lr {args.lr}, thresholds "
          f"from {args.public} public test images; recovered = PSNR > {RECOVERED_DB:g} dB")
    print(f"{'model':9} {'combo':9} {'attacker':9} {'recovered per client':>22} {'mean PSNR':>10} {'s':>5}")
    for name in args.models.split(","):
        for combo in args.combos.split(","):
            for informed in (False, True):
                start = time.perf_counter()
                counts, psnrs = run_cell(name, combo, informed, args, public, batches)
                mean = f"{np.mean(psnrs):10.1f}" if psnrs else f"{'-':>10}"
                per_client = " ".join(f"{c:2d}" for c in counts) + f" /{args.batch}"
                print(f"{name:9} {combo:9} {'informed' if informed else 'oblivious':9} {per_client:>22} {mean} "
                      f"{time.perf_counter() - start:5.1f}", flush=True)


if __name__ == "__main__":
    main()
