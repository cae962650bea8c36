"""Grid blocks: a sweep can run a union of (combinations x defense sets) blocks instead of the full product."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import ConfigError, load_config, parse_config

BASE = {
    "models": ["mlp"],
    "biomod": {"combos": ["none", "fl", "ws"]},
    "defenses": ["none", {"name": "p90", "steps": [{"type": "prune", "fraction": 0.9}]},
                 {"name": "sign", "steps": [{"type": "quantize", "mode": "sign"}]}],
}
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def pairs(config: dict) -> list[tuple[str, str]]:
    return [(cell.combo, cell.defense.name) for cell in expand(parse_config(config))]


def test_without_blocks_the_grid_is_the_full_product() -> None:
    assert len(pairs(BASE)) == 9


def test_blocks_run_their_union_in_order() -> None:
    config = {**BASE, "grid": [{"defenses": ["none"]}, {"combos": ["none"], "defenses": ["p90", "sign"]}]}
    assert pairs(config) == [("none", "none"), ("fl", "none"), ("ws", "none"), ("none", "p90"), ("none", "sign")]


def test_cell_keys_do_not_depend_on_blocks() -> None:
    full = {cell.key for cell in expand(parse_config(BASE))}
    blocked = {cell.key for cell in expand(parse_config({**BASE, "grid": [{"combos": ["fl"], "defenses": ["sign"]}]}))}
    assert blocked < full


def test_bad_blocks_are_named() -> None:
    with pytest.raises(ConfigError, match=r"grid\.1\.defenses: unknown defense set\(s\) \['blur'\]"):
        parse_config({**BASE, "grid": [{}, {"defenses": ["blur"]}]})
    with pytest.raises(ConfigError, match=r"grid\.0\.combos.*unknown combination 'fl\+gr'"):
        parse_config({**BASE, "grid": [{"combos": ["fl+gr"]}]})
    with pytest.raises(ValueError, match="overlapping grid blocks"):
        expand(parse_config({**BASE, "grid": [{"defenses": ["none"]}, {"combos": ["none"]}]}))


def test_defenses_config_covers_the_comparison(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDSYN_CIFAR10_DIR", str(tmp_path))
    cells = expand(load_config(CONFIGS / "defenses.yaml"))
    for model in ("resnet20", "convnet"):
        mine = [cell for cell in cells if cell.model.name == model]
        assert {c.combo for c in mine if c.defense.name == "none"} == {"none", "fl", "wr", "ws", "fl+wr+ws"}
        steps = [step for c in mine for step in c.defense.steps]
        assert sorted(s.noise_multiplier for s in steps if s.type == "clip_noise") == [0.001, 0.01, 0.1]
        assert sorted(s.fraction for s in steps if s.type == "prune") == [0.5, 0.9, 0.99]
        assert {s.type for s in steps} == {"clip_noise", "dpsgd", "prune", "quantize", "secagg"}
        assert all(c.combo == "none" for c in mine if c.defense.steps)
    assert all(cell.attack.attackers == ("oblivious", "informed") for cell in cells)
    assert {cell.dataset.name for cell in cells} == {"imagefolder"}


def test_secagg_needs_enough_clients() -> None:
    config = {**BASE, "federation": {"clients": 2}, "defenses": [{"type": "secagg", "num_shares": 3}]}
    with pytest.raises(ConfigError, match=r"num_shares \(3\) needs at least as many clients"):
        parse_config(config)


ACTIVE = {
    **BASE,
    "models": ["convnet"],
    "defenses": ["none"],
    "attack": {
        "methods": ["imprint"],
        "attackers": ["oblivious", "informed"],
        "inversion": {"iterations": 500, "restarts": 2},
        "active": {"type": "imprint", "designs": ["oblivious"], "bins": 32},
    },
}
PASSIVE_BLOCK = {"active": None, "methods": ["inverting-gradients"], "inversion": {"iterations": 40}}


def test_a_block_replaces_attack_settings_and_nested_ones_merge() -> None:
    config = {**ACTIVE, "grid": [{}, {"combos": ["none"], "attack": PASSIVE_BLOCK}]}
    cells = expand(parse_config(config))
    active = [cell for cell in cells if cell.attack.active is not None]
    passive = [cell for cell in cells if cell.attack.active is None]
    assert [c.combo for c in active] == ["none", "fl", "ws"] and [c.combo for c in passive] == ["none"]
    assert all(c.attack.methods == ("imprint",) and c.attack.inversion.iterations == 500 for c in active)
    (cell,) = passive
    assert cell.attack.methods == ("inverting-gradients",)
    assert (cell.attack.inversion.iterations, cell.attack.inversion.restarts) == (40, 2)  # restarts kept
    assert cell.attack.attackers == ("oblivious", "informed")
    assert cell.key not in {c.key for c in active}
    alone = expand(parse_config({**ACTIVE, "grid": [{}]}))
    assert [c.key for c in alone] == [c.key for c in active]  # the passive block leaves the others' keys alone


def test_bad_block_attack_settings_are_named() -> None:
    with pytest.raises(ConfigError, match=r"grid\.1\.attack: methods: .*unknown attack method .no-such-method.; allowed: inverting-gradients"):
        parse_config({**ACTIVE, "grid": [{}, {"attack": {"methods": ["no-such-method"]}}]})
    with pytest.raises(ConfigError, match=r"grid\.0\.attack: inversion\.iterations: Input should be greater"):
        parse_config({**ACTIVE, "grid": [{"attack": {"inversion": {"iterations": 0}}}]})
    with pytest.raises(ConfigError, match=r"grid\.0\.attack\.clients \[9\] not in 0\.\.1"):
        parse_config({**ACTIVE, "federation": {"clients": 2}, "grid": [{"attack": {"clients": [9]}}]})
    with pytest.raises(ConfigError, match=r"grid\.0\.attack\.active\.round 2 is not among grid\.0\.attack\.rounds"):
        parse_config({**ACTIVE, "federation": {"rounds": 2}, "grid": [{"attack": {"active": {"round": 2}}}]})


def test_active_cpu_runs_a_passive_cell_beside_each_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDSYN_CIFAR10_DIR", str(tmp_path))
    cells = expand(load_config(CONFIGS / "active-cpu.yaml"))
    passive = [cell for cell in cells if cell.attack.active is None]
    assert sorted(c.model.name for c in passive) == ["convnet", "resnet20"]
    assert all((c.combo, c.defense.name) == ("none", "none") for c in passive)
    assert all("imprint" not in c.attack.methods for c in passive)
    assert len(cells) - len(passive) == 36
