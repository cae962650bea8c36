"""Training-step cost of every FL/WR/WS combination relative to the plain model (CPU).

One step is forward + backward + ``optimizer.step()`` with the biomod hooks attached (FL before the
step, WR after it, WS in the forward/backward). The eight combinations of a network are timed in
interleaved rounds so that background load hits them alike; each entry is the lowest per-round
median, in ms. Target (issue 2): ``fl+wr+ws`` at most 1.3x ``none``.

    python benchmarks/biomod_overhead.py                       # mlp, alexnet, resnet20 at batch 64
    python benchmarks/biomod_overhead.py --rounds 2 --steps 3  # quicker, noisier
    python benchmarks/biomod_overhead.py --threads 1 --clock cpu   # steadier on a busy machine
"""

from __future__ import annotations

import argparse
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
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, steadier on a shared machine (meaningful with --threads 1)",
    )
    return parser.parse_args()


class Trainer:
    """One converted copy of the network with its optimizer and attached hooks."""

    def __init__(self, name: str, combo: str, batch: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        plain = build_model(name, num_classes=10, seed=0)
        self.model = convert(plain, BiomodConfig.from_combo(combo), seed=0)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.handle = attach(self.optimizer, self.model)
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 3, 32, 32, generator=generator)
        self.y = torch.randint(0, 10, (batch,), generator=generator)

    def step(self) -> float:
        start = self.clock()
        self.optimizer.zero_grad()
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.optimizer.step()
        return self.clock() - start


def time_network(name: str, args: argparse.Namespace) -> dict[str, tuple[float, int]]:
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    trainers = {combo: Trainer(name, combo, args.batch, clock) for combo in args.combos}
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.step()
    best = {combo: float("inf") for combo in trainers}
    for _ in range(args.rounds):
        for combo, trainer in trainers.items():
            median = statistics.median(trainer.step() for _ in range(args.steps))
            best[combo] = min(best[combo], median)
    return {combo: (1000 * best[combo], trainers[combo].handle.rejuvenated_last) for combo in trainers}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, batch {args.batch}, "
          f"{args.rounds} rounds x {args.steps} steps (+{args.warmup} warm-up)")
    print("| model | combination | ms/step | x plain | WR re-drawn last step |")
    print("|---|---|---:|---:|---:|")
    for name in args.models:
        results = time_network(name, args)
        base = results["none"][0] if "none" in results else float("nan")
        for combo, (ms, redrawn) in results.items():
            print(f"| {name} | {combo} | {ms:.1f} | {ms / base:.2f} | {redrawn} |", flush=True)


if __name__ == "__main__":
    main()
