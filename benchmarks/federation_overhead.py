"""Cost of running the federation on Flower's simulation engine instead of a plain Python loop.

Both do the same work for ``--clients`` clients x ``--rounds`` rounds: each client's local training
(``fedsyn.task.training.client_round``: build + convert the model, load the global arrays,
local SGD with FL/WR/WS), the FedAvg step, and each client's evaluation of the new global model. The
simulation is ``fedsyn.federation.simulation.federate`` (Ray actors, message serialisation, the
capture written to disk); the loop calls the same functions in-process with torch's default threads.
Wall times include everything each path needs from a cold start (Ray and its actors for the
simulation). Target (issue 3): simulation at most 1.5x the loop. The simulation runs one client per
core side by side (one torch thread each); the loop runs clients one after another with
``--loop-threads`` torch threads (default: torch's own choice, all cores).

    python benchmarks/federation_overhead.py                      # 10 clients x 3 rounds, ConvNet-16
    python benchmarks/federation_overhead.py --local-steps 20 --width 32   # more work per message
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import parse_config
from fedsyn.federation.simulation import federate
from fedsyn.task.data import client_partitions, dataset_spec, eval_shard, load_split
from fedsyn.task.model import client_model, plain_model
from fedsyn.task.training import LocalHyper, accuracy_and_loss, client_round


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--width", type=int, default=16, help="convnet/mlp width")
    parser.add_argument("--combo", default="fl+wr+ws")
    parser.add_argument("--local-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=512)
    parser.add_argument("--dataset", default="photos", help="photos, or imagefolder with --data-root")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--loop-threads", type=int, default=0, help="torch threads of the plain loop (0: default)")
    return parser.parse_args()


def bench_cell(args: argparse.Namespace) -> Cell:
    options = {"width": args.width} if args.model in ("convnet", "mlp") else {}
    dataset = {"name": args.dataset} if args.data_root is None else {"name": args.dataset, "root": args.data_root}
    config = parse_config(
        {
            "name": "federation-overhead",
            "dataset": dataset,
            "models": [{"name": args.model, "options": options}],
            "biomod": {"combos": [args.combo]},
            "federation": {
                "clients": args.clients,
                "rounds": args.rounds,
                "local_steps": args.local_steps,
                "batch_size": args.batch_size,
                "eval_samples": args.eval_samples,
            },
        }
    )
    return expand(config)[0]


def plain_loop(cell: Cell) -> float:
    """The same rounds without Flower: sequential clients, FedAvg on updates, evaluation; seconds."""
    started = time.perf_counter()
    spec = dataset_spec(cell)
    train, test = load_split(spec, "train"), load_split(spec, "test")
    parts = client_partitions(cell, train)
    state = plain_model(cell, train.num_classes, train.in_shape).state_dict()
    hyper = LocalHyper.from_cell(cell)
    for round in range(1, cell.federation.rounds + 1):
        results = [
            client_round(cell, state, train=train, partition_indices=part, partition_id=pid, round=round, hyper=hyper)
            for pid, part in enumerate(parts)
        ]
        total = sum(r.num_examples for r in results)
        state = {
            name: (start + sum(r.num_examples / total * r.arrays[name].double() for r in results)).to(start.dtype)
            for name, start in state.items()
        }
        for pid in range(cell.federation.clients):
            model = client_model(cell, pid, round, test.num_classes, test.in_shape)
            model.load_state_dict(state)
            accuracy_and_loss(model, test, eval_shard(cell, test, pid))
    return time.perf_counter() - started


def simulation(cell: Cell) -> tuple[float, list[float]]:
    """Wall seconds of ``federate`` and the seconds of each round as the server measured them."""
    from fedsyn.evaluation.capture import Capture

    with tempfile.TemporaryDirectory(prefix="fedsyn-bench-") as out:
        started = time.perf_counter()
        capture = federate(cell, Path(out))
        seconds = time.perf_counter() - started
        rounds = [r["seconds"] for r in Capture(capture).summary["rounds"]]
    return seconds, rounds


def main() -> None:
    args = parse_args()
    cell = bench_cell(args)
    if args.loop_threads:
        torch.set_num_threads(args.loop_threads)
    print(
        f"{args.clients} clients x {args.rounds} rounds, {args.model} ({cell.combo}), {args.local_steps} local steps "
        f"of {args.batch_size}, {args.dataset}; loop: {torch.get_num_threads()} torch threads, simulation: one "
        f"thread per client"
    )
    loop = plain_loop(cell)
    sim, rounds = simulation(cell)
    steady = sum(rounds[1:]) / max(1, len(rounds) - 1)
    loop_round = loop / args.rounds
    print(f"{'path':<28}{'wall s':>10}{'per round s':>14}{'ratio':>8}")
    print(f"{'plain loop':<28}{loop:>10.1f}{loop_round:>14.2f}{1.0:>8.2f}")
    print(f"{'simulation (cold start)':<28}{sim:>10.1f}{sim / args.rounds:>14.2f}{sim / loop:>8.2f}")
    print(f"{'simulation (rounds 2+)':<28}{'':>10}{steady:>14.2f}{steady / loop_round:>8.2f}")


if __name__ == "__main__":
    main()
