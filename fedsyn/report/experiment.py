"""What experiment a table comes from: the threat model and the budget, read from the store.

Every cell record holds its whole configuration (``cell_json``), so the report can say, per table, which
dataset, model, federation, capture, BatchNorm mode, attack methods and budget produced the numbers, and
what the attacker knew (issue 12, "the report states its experiment"). A setting that differs between
the cells of one table is listed with all its values.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from attacks.config import default_tv

from .servers import server_of

KNOWLEDGE: dict[str, str] = {
    "oblivious": "the architecture (with its WS structure) and the round's global weights; it treats the "
    "update as one plain gradient and knows nothing of FL, WR or the defenses",
    "informed": "everything the oblivious attacker knows, plus the local hyperparameters (several steps are "
    "unrolled), shared FL factors, which entries WR may have re-drawn, and pruning masks; never the "
    "clients' private random draws",
}
"""What each attacker knows, in words (docs/methods.md, "Oblivious vs informed attacker")."""


def _values(configs: Sequence[dict[str, Any]], read: Callable[[dict[str, Any]], Any]) -> str:
    found: list[str] = []
    for config in configs:
        try:
            value = read(config)
        except (KeyError, TypeError):
            value = "not recorded"
        text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        if text not in found:
            found.append(text)
    return "; ".join(found) if found else "not recorded"


def _at(*keys: str) -> Callable[[dict[str, Any]], Any]:
    """A reader of the nested setting ``keys`` of a cell's configuration."""
    return lambda config: functools.reduce(operator.getitem, keys, config)


def _tv(config: dict[str, Any]) -> str:
    tv = config["attack"]["inversion"]["tv"]
    if tv is None:
        return f"{default_tv(config['model']['name']):g} (the default for {config['model']['name']})"
    if isinstance(tv, list):
        return "candidates " + ", ".join(f"{w:g}" for w in tv) + " (lowest matching loss wins)"
    return f"{tv:g}"


def _client_bn(config: dict[str, Any]) -> str:
    mode = config["federation"].get("bn_mode")
    if mode is None:
        return "train (batch statistics; not a setting in the version that produced these results)"
    source = config["federation"].get("bn_stats")
    return f"{mode}" + (f", running statistics: {source}" if source and mode == "eval" else "")


def _converged(rows: Sequence[dict[str, Any]]) -> str:
    scored = [row for row in rows if row["status"] == "ok" and row["method"] == "inverting-gradients"]
    known = [row.get("converged") for row in scored if row.get("converged") is not None]
    if not scored:
        return "no inverting-gradients reconstruction"
    if not known:
        return "not recorded by the version that produced these results"
    done = sum(1 for flag in known if flag)
    return f"{done} of {len(known)} inverting-gradients attacks converged"


def experiment_facts(
    cells: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], attacker: str
) -> list[tuple[str, str]]:
    """(setting, value) pairs describing the cells and rows of one table."""
    configs = [json.loads(cell["cell_json"]) for cell in cells]
    scored = [row for row in rows if row["status"] == "ok"]
    seeds = sorted({str(row.get("seed")) for row in rows if row.get("seed") is not None})
    targets = {(row["cell_key"], row.get("seed"), row["round"], row["partition_id"]) for row in rows}

    def dataset(c: dict[str, Any]) -> str:
        details = [f"{k}={v}" for k, v in sorted(c["dataset"]["options"].items())]
        details += [f"from {c['dataset']['root']}"] if c["dataset"].get("root") else []
        return c["dataset"]["name"] + (f" ({', '.join(details)})" if details else "")

    return [
        ("server", _values(configs, server_of)),
        ("dataset", _values(configs, dataset)),
        ("models", _values(configs, lambda c: c["model"]["name"] + "".join(
            f" {k}={v}" for k, v in sorted(c["model"]["options"].items())))),
        ("pretraining epochs", _values(configs, _at("trained"))),
        ("clients", _values(configs, _at("federation", "clients"))),
        ("federation rounds", _values(configs, _at("federation", "rounds"))),
        ("local steps", _values(configs, _at("federation", "local_steps"))),
        ("batch size", _values(configs, _at("federation", "batch_size"))),
        ("client learning rate", _values(configs, _at("federation", "lr"))),
        ("capture (what the server attacks)", _values(configs, _at("federation", "capture"))),
        ("clients' BatchNorm mode", _values(configs, _client_bn)),
        ("attack's BatchNorm mode", _values(configs, _at("attack", "inversion", "bn_mode"))),
        ("attack methods", _values(configs, _at("attack", "methods"))),
        ("attacked rounds", _values(configs, _at("attack", "rounds"))),
        ("seeds", ", ".join(seeds) if seeds else _values(configs, _at("seed"))),
        ("reconstruction targets (seed, round, client per cell)", str(len(targets))),
        ("scored reconstructions", str(len(scored))),
        ("inversion iterations (budget)", _values(configs, _at("attack", "inversion", "iterations"))),
        ("converged", _converged(rows)),
        ("restarts", _values(configs, _at("attack", "inversion", "restarts"))),
        ("total variation weight", _values(configs, _tv)),
        ("labels", _values(configs, _at("attack", "labels"))),
        ("attacker", f"{attacker}: knows {KNOWLEDGE.get(attacker, 'not described')}"),
        ("FL/WR/WS settings", _values(configs, lambda c: (
            f"tau {c['biomod']['tau']}, d_re {c['biomod']['d_re']}, gamma {c['biomod']['gamma']}, "
            f"FL scope {c['biomod']['fl_scope']}, GRAPES {'on' if c['biomod']['grapes'] else 'off'}"))),
    ]
