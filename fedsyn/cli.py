"""The ``fedsyn`` command line: sweep, federate, attack, report, quickstart, fetch-weights, certs.

Exit status: 0 when everything asked for was done; 1 when the command ran but some of its work failed
(a sweep's failed cells or failed result rows, an attack's failed rows; the count is printed); 2 for a
user error (any ``FedsynError``, printed as one line without a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fedsyn.errors import FedsynError

PARTLY_FAILED = 1
USER_ERROR = 2

if TYPE_CHECKING:
    from fedsyn.sweep.runner import SweepSummary

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


class WeightsFetchError(FedsynError, RuntimeError):
    """The LPIPS backbone could not be fetched (``attacks.lpips_backbone.BackboneFetchError``, which the
    ``attacks`` package raises without knowing ``FedsynError``)."""


def _sweep(args: argparse.Namespace) -> int:
    from fedsyn.experiment.grid import expand
    from fedsyn.sweep.runner import run_sweep
    from fedsyn.experiment.schema import load_config

    config = load_config(args.config)
    if args.dry_run:
        cells = expand(config)
        for index, cell in enumerate(cells):
            print(f"{index:4d}  {cell.describe()}")
        print(f"{len(cells)} cells")
        return 0
    summary = run_sweep(
        config, Path(args.out), workers=args.workers, ray_address=args.ray_address, progress=not args.quiet,
        redo=args.redo,
    )
    return _failures("sweep", summary)


def _failures(command: str, summary: SweepSummary) -> int:
    """Print the failures of a sweep's grid and give the exit status."""
    if not summary.failed:
        return 0
    advice = "`fedsyn report` lists the errors, a rerun retries the failed cells"
    print(f"fedsyn {command}: {summary.describe()}; {advice}", file=sys.stderr)
    return PARTLY_FAILED


def _federate(args: argparse.Namespace) -> int:
    from fedsyn.experiment.grid import expand
    from fedsyn.experiment.schema import ConfigError, load_config
    from fedsyn.federation.simulation import federate

    cells = expand(load_config(args.config))
    if args.cell is None and len(cells) != 1:
        raise ConfigError(f"{args.config} expands to {len(cells)} cells; pick one with --cell 0..{len(cells) - 1}")
    index = args.cell or 0
    if not 0 <= index < len(cells):
        raise ConfigError(f"--cell {index} is out of range 0..{len(cells) - 1}")
    capture = federate(cells[index], Path(args.out))
    print(f"capture written to {capture}")
    return 0


def _attack(args: argparse.Namespace) -> int:
    from fedsyn.evaluation.evaluator import attack_capture
    from fedsyn.experiment.schema import load_config

    attack = load_config(args.config).attack if args.config else None
    rows = attack_capture(Path(args.capture), attack=attack, out=Path(args.out) if args.out else None)
    print(f"{len(rows)} updates attacked")
    failed = [row for row in rows if row["status"] == "failed"]
    if failed:
        print(f"fedsyn attack: {len(failed)} of {len(rows)} rows failed; first: {failed[0]['error']}", file=sys.stderr)
        return PARTLY_FAILED
    return 0


def _report(args: argparse.Namespace) -> int:
    from fedsyn.report import build_report

    path = build_report(Path(args.results), metric=args.metric)
    print(f"report written to {path}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from fedsyn.sweep.quickstart import quickstart

    summary = quickstart(Path(args.out), dataset=args.dataset, data_root=args.data_root, workers=args.workers)
    return _failures("quickstart", summary)


def _fetch_weights(args: argparse.Namespace) -> int:
    from attacks.lpips_backbone import BackboneFetchError, fetch_backbone

    try:
        path = fetch_backbone(progress=not args.quiet)
    except BackboneFetchError as err:
        raise WeightsFetchError(" ".join(str(err).split())) from None
    print(f"LPIPS AlexNet backbone ready at {path}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from fedsyn.federation.certs import DEFAULT_HOSTS, CertificateError, CertificatePlan, create_certificates

    try:
        plan = CertificatePlan(hosts=DEFAULT_HOSTS + tuple(args.host), supernodes=args.supernodes, days=args.days)
    except ValidationError as err:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise CertificateError(reasons) from None
    create_certificates(args.folder, plan, overwrite=args.overwrite)
    hosts = ", ".join(plan.hosts)
    print(f"wrote a CA, the SuperLink certificate ({hosts}) and {plan.supernodes} SuperNode key pairs to {args.folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fedsyn.experiment.names import REPORT_METRICS
    from fedsyn.sweep.quickstart import QUICKSTART_DATASETS

    parser = argparse.ArgumentParser(prog="fedsyn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sweep", help="run (or resume) every cell of a YAML experiment")
    p.add_argument("config")
    p.add_argument("--out", default="results/sweep", help="results directory (resumed if it exists)")
    p.add_argument("--workers", type=int, default=1, help="cells run in parallel on this machine")
    p.add_argument("--ray-address", default=None, help="send cells to an existing Ray cluster")
    p.add_argument("--dry-run", action="store_true", help="print the expanded cells and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--redo",
        action="store_true",
        help="delete the folders of cells the store does not list as finished (a lost WAL) and run them again",
    )
    p.set_defaults(func=_sweep)

    p = sub.add_parser("federate", help="run one cell's federation on Flower's simulation engine")
    p.add_argument("config")
    p.add_argument("--out", default="results/federation")
    p.add_argument("--cell", type=int, default=None, help="index of the cell (see sweep --dry-run)")
    p.set_defaults(func=_federate)

    p = sub.add_parser("attack", help="attack and score every update of a capture directory")
    p.add_argument("capture")
    p.add_argument("--config", default=None, help="experiment YAML whose 'attack' section is used")
    p.add_argument("--out", default=None, help="where to write the rows (default: inside the capture)")
    p.set_defaults(func=_attack)

    p = sub.add_parser("report", help="tables, plots, image grids and report.html for a results directory")
    p.add_argument("results")
    p.add_argument("--metric", default="mse_pct", choices=REPORT_METRICS)
    p.set_defaults(func=_report)

    p = sub.add_parser("quickstart", help="small sweep of all 8 FL/WR/WS combinations, then the report")
    p.add_argument("--out", default="results/quickstart")
    p.add_argument("--dataset", default="photos", choices=QUICKSTART_DATASETS)
    p.add_argument("--data-root", default=None, help="dataset folder (CIFAR-10 export or torchvision root)")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=_quickstart)

    p = sub.add_parser("fetch-weights", help="download LPIPS's AlexNet backbone into the torch hub cache")
    p.add_argument("--quiet", action="store_true", help="no download progress bar")
    p.set_defaults(func=_fetch_weights)

    p = sub.add_parser("certs", help="test CA, SuperLink TLS certificate and SuperNode keys for a deployment")
    p.add_argument("folder", type=Path, help="where to write the files (created if missing)")
    p.add_argument("--supernodes", type=int, default=2, help="SuperNode key pairs to create (default 2)")
    p.add_argument("--host", action="append", default=[], help="a further name or address of the SuperLink")
    p.add_argument("--days", type=int, default=365, help="validity of the certificates in days")
    p.add_argument("--overwrite", action="store_true", help="replace credentials already in the folder")
    p.set_defaults(func=_certs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FedsynError, FileNotFoundError) as err:
        print(f"fedsyn {args.command}: error: {err}", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
