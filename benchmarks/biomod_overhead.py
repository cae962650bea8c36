"""Training-step cost of every FL/WR/WS combination relative to the plain model.

One step is forward + backward + ``optimizer.step()`` with the biomod hooks attached (FL before the
step, WR after it, WS in the forward/backward). The combinations of a network are timed in
interleaved rounds so that background load hits them alike: each round times ``--steps`` steps of
every combination in turn. ``ms/step`` is the median over rounds of each round's median step;
``x plain`` is the median over rounds of the round's ratio to ``none`` (paired within a round, so a
load change between rounds cancels). The load average before and after is printed: on a shared
machine read the ratios, not the milliseconds. Target (issue 14): ``fl+wr+ws`` at most 1.2x ``none``.

    python benchmarks/biomod_overhead.py                       # mlp, alexnet, resnet20 at batch 64
    python benchmarks/biomod_overhead.py --rounds 2 --steps 3  # quicker, noisier
    python benchmarks/biomod_overhead.py --threads 1 --clock cpu   # steadier on a busy machine
    python benchmarks/biomod_overhead.py --device cuda         # the same table on a GPU
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from fedsyn.biomod import COMBOS, BiomodConfig, attach, convert
from fedsyn.models import build_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "alexnet", "resnet20"])
    parser.add_argument("--combos", nargs="+", default=list(COMBOS), choices=COMBOS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per network")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per combination and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per combination first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda when present, else cpu"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, steadier on a shared machine (meaningful with --threads 1 on the CPU)",
    )
    args = parser.parse_args()
    if args.clock == "cpu" and torch.device(args.device).type != "cpu":
        parser.error(f"--clock cpu measures host CPU time, not {args.device} time; use --clock wall")
    return args


class Trainer:
    """One converted copy of the network with its optimizer and attached hooks."""

    def __init__(self, name: str, combo: str, batch: int, clock: Callable[[], float], device: torch.device) -> None:
        self.clock = clock
        self.device = device
        plain = build_model(name, num_classes=10, seed=0)
        self.model = convert(plain, BiomodConfig.from_combo(combo), seed=0).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.handle = attach(self.optimizer, self.model)
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
        self.y = torch.randint(0, 10, (batch,), generator=generator).to(device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> float:
        self.sync()
        start = self.clock()
        self.optimizer.zero_grad()
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.optimizer.step()
        self.sync()
        return self.clock() - start


def time_network(name: str, args: argparse.Namespace) -> dict[str, tuple[float, float, int]]:
    """Per combination: median ms/step, median ratio to ``none`` (nan without it), last WR count."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    device = torch.device(args.device)
    trainers = {combo: Trainer(name, combo, args.batch, clock, device) for combo in args.combos}
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.step()
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        rounds.append(
            {combo: statistics.median(trainer.step() for _ in range(args.steps)) for combo, trainer in trainers.items()}
        )
    results = {}
    for combo, trainer in trainers.items():
        ms = 1000 * statistics.median(times[combo] for times in rounds)
        ratio = statistics.median(times[combo] / times["none"] for times in rounds) if "none" in trainers else math.nan
        results[combo] = (ms, ratio, trainer.handle.rejuvenated_last)
    return results


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, {args.device} ({where}), {torch.get_num_threads()} threads, {args.clock} clock, "
          f"batch {args.batch}, {args.rounds} rounds x {args.steps} steps (+{args.warmup} warm-up)")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("| model | combination | ms/step | x plain | WR re-drawn last step |")
    print("|---|---|---:|---:|---:|")
    for name in args.models:
        for combo, (ms, ratio, redrawn) in time_network(name, args).items():
            print(f"| {name} | {combo} | {ms:.1f} | {ratio:.2f} | {redrawn} |", flush=True)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
