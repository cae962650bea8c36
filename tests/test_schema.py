"""The experiment schema rejects bad configs with the field named, and grid expansion is stable."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedsyn.cli import main
from fedsyn.experiment.grid import expand
from fedsyn.experiment.names import COMBOS
from fedsyn.experiment.schema import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "name": "tiny",
    "dataset": {"name": "photos"},
    "models": ["convnet", "lenet"],
    "trained": [0, 2],
    "biomod": {"combos": "all"},
    "federation": {"clients": 2, "rounds": 1},
    "defenses": ["none", {"type": "prune", "fraction": 0.5}],
}


def config(**changes):
    data = {**BASE, **changes}
    return parse_config(data, "test.yaml")


def error_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    return str(info.value)


def test_unknown_top_level_key_is_named():
    message = error_of({**BASE, "federaton": {"clients": 2}})
    assert "federaton" in message and "test.yaml" in message


def test_unknown_nested_key_is_named_with_its_path():
    message = error_of({**BASE, "federation": {"clients": 2, "round": 3}})
    assert "federation.round" in message


def test_bad_combination_lists_the_allowed_ones():
    message = error_of({**BASE, "biomod": {"combos": ["fl", "fl+xx"]}})
    assert "biomod.combos" in message and "'fl+xx'" in message
    assert all(combo in message for combo in COMBOS)


def test_bad_model_lists_the_known_models():
    message = error_of({**BASE, "models": ["resnet21"]})
    assert "models.0.name" in message and "'resnet21'" in message
    assert "resnet20" in message and "alexnet" in message


def test_bad_defense_type_lists_the_allowed_types():
    message = error_of({**BASE, "defenses": [{"type": "blur", "sigma": 1}]})
    assert "defenses.0" in message and "'blur'" in message
    for name in ("clip_noise", "dpsgd", "prune", "quantize", "secagg"):
        assert name in message


def test_bad_closed_choice_lists_allowed_values():
    message = error_of({**BASE, "federation": {"capture": "weights"}})
    assert "federation.capture" in message and "'update'" in message and "'gradient'" in message


def test_rounds_outside_the_federation_are_rejected():
    assert "attack.rounds" in error_of({**BASE, "attack": {"rounds": [3]}})
    assert "capture_rounds" in error_of({**BASE, "federation": {"rounds": 2, "capture_rounds": [5]}})


def test_top_level_must_be_a_mapping():
    assert "mapping" in error_of(["not", "a", "mapping"])


def test_load_config_names_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [convnet\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_env_references_are_expanded_in_load_config(tmp_path, monkeypatch):
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump({"models": ["convnet"], "dataset": {"name": "imagefolder", "root": "${FEDSYN_TEST_ROOT}/cifar"}}))
    monkeypatch.setenv("FEDSYN_TEST_ROOT", str(tmp_path))
    assert load_config(path).dataset.root == tmp_path / "cifar"
    monkeypatch.delenv("FEDSYN_TEST_ROOT")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "dataset.root" in str(info.value) and "FEDSYN_TEST_ROOT" in str(info.value)


def test_expansion_counts_and_order():
    cells = expand(config())
    assert len(cells) == 2 * 2 * 8 * 2
    order = [(c.model.name, c.trained, c.combo, c.defense.name) for c in cells]
    expected = [
        (model, trained, combo, defense)
        for model in ("convnet", "lenet")
        for trained in (0, 2)
        for combo in COMBOS
        for defense in ("none", "prune")
    ]
    assert order == expected
    for cell in cells:
        methods = set() if cell.combo == "none" else set(cell.combo.split("+"))
        assert (cell.biomod.fl, cell.biomod.wr, cell.biomod.ws) == tuple(m in methods for m in ("fl", "wr", "ws"))


def test_keys_are_unique_stable_and_content_addressed():
    first = {(c.model.name, c.trained, c.combo, c.defense.name): c.key for c in expand(config())}
    again = {(c.model.name, c.trained, c.combo, c.defense.name): c.key for c in expand(config())}
    assert first == again and len(set(first.values())) == len(first)
    subset = expand(config(biomod={"combos": ["fl+ws", "none"]}, models=["lenet"]))
    assert {c.key for c in subset} <= set(first.values())
    reseeded = expand(config(seed=1))
    assert not {c.key for c in reseeded} & set(first.values())


def test_duplicate_grid_points_are_rejected():
    with pytest.raises(ValueError, match="same cell twice"):
        expand(config(trained=[0, 0]))


@pytest.mark.parametrize(
    ("name", "cells"),
    [("quickstart.yaml", 8), ("table3.yaml", 66), ("table3-cpu.yaml", 36), ("defenses.yaml", 30), ("defenses-cpu.yaml", 30)],
)
def test_shipped_configs_validate(name, cells, monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSYN_CIFAR10_DIR", str(tmp_path))
    assert len(expand(load_config(REPO / "configs" / name))) == cells


def test_dry_run_prints_one_line_per_cell(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "64 cells" and len(lines) == 65
    assert not (tmp_path / "out").exists()


def test_seeds_repeat_the_grid_outermost_and_one_seed_keeps_its_keys():
    single = expand(config(seed=0))
    assert [c.key for c in single] == [c.key for c in expand(config(seeds=[0]))] == [c.key for c in expand(config())]
    repeated = expand(config(seeds=[0, 1, 2]))
    assert len(repeated) == 3 * len(single) and [c.seed for c in repeated] == [s for s in (0, 1, 2) for _ in single]
    assert [c.key for c in repeated[: len(single)]] == [c.key for c in single]
    assert "seed=1" in repeated[len(single)].describe()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": 0, "seeds": [1]}, "either seed"),
        ({"seeds": [0, 0]}, "lists a name twice"),
        ({"seeds": [-1]}, "seeds must be >= 0"),
        ({"seeds": []}, "seeds"),
    ],
)
def test_bad_seeds_are_named(changes, message):
    assert message in error_of({**BASE, **changes})


def test_every_combination_of_a_seed_attacks_the_same_images():
    """Paired comparisons: partitions and batches depend on the seed, never on model, combination or defense."""
    from fedsyn.task.data import client_partitions, load_split
    from fedsyn.task.training import LocalHyper, round_batches

    cells = expand(config(seeds=[0, 1], dataset={"name": "photos", "options": {"per_class": 20}}))
    train = load_split(cells[0].dataset, "train")

    def batches(cell):
        owned = client_partitions(cell, train)
        hyper = LocalHyper.from_cell(cell)
        return [
            index.tolist()
            for partition_id in range(cell.federation.clients)
            for index in round_batches(cell, owned[partition_id], partition_id=partition_id, round=1, hyper=hyper)
        ]

    by_seed = {seed: {str(batches(c)) for c in cells if c.seed == seed} for seed in (0, 1)}
    assert len(by_seed[0]) == len(by_seed[1]) == 1 and by_seed[0] != by_seed[1]


def test_dry_run_catches_a_bad_model_option_naming_it(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "models": [{"name": "convnet", "options": {"width": -3}}]}))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "models.0.options" in err and "option width: Input should be greater than 0" in err and "cells" not in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": {"name": "photos", "options": {"per_clas": 4}}}, "dataset 'photos': no option 'per_clas'"),
        ({"dataset": {"name": "photos", "options": {"patch_size": 2}}}, "option patch_size: Input should be greater"),
        ({"models": [{"name": "mlp", "options": {"depth": "two"}}]}, "option depth: Input should be a valid integer"),
        ({"models": [{"name": "resnet20", "options": {"width": 8}}]}, "no option 'width' (its options: none)"),
    ],
)
def test_model_and_dataset_options_are_checked_at_load(changes, message):
    assert message in error_of({**BASE, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"federation": {"clients": True}},
        {"trained": [0, True]},
        {"federation": {"lr": False}},
        {"attack": {"clients": [True]}},
        {"attack": {"inversion": {"iterations": True}}},
        {"models": [{"name": "convnet", "options": {"width": True}}]},
    ],
)
def test_booleans_are_not_numbers(changes):
    assert "a boolean is not a number" in error_of({**BASE, **changes})


def test_booleans_stay_booleans_and_options_keep_their_keys():
    loaded = config(dataset={"name": "photos", "download": False}, biomod={"grapes": True})
    assert loaded.biomod.grapes is True
    first = config(models=[{"name": "convnet", "options": {"width": 16}}])
    assert first.models[0].label == "convnet-width=16"
    same = config(models=[{"name": "convnet", "options": {"width": 16.0}}])
    assert [c.key for c in expand(first)] == [c.key for c in expand(same)]


def test_photos_options_that_leave_a_split_empty_are_refused_at_load():
    message = error_of({**BASE, "dataset": {"name": "photos", "options": {"per_class": 1}}})
    assert "dataset.options" in message and "leaves 0 test and 1 training patches" in message


def test_a_bad_list_item_is_reported_once():
    message = error_of({**BASE, "models": [{"name": "convnet", "options": {"width": -3}}]})
    assert message.count("\n") == 1 and "too short" not in message and "at least 1 item" not in message


def test_a_width_matched_control_runs_only_without_fl_wr_ws():
    models = [{"name": "mlp", "options": {"width": 64}}, {"name": "mlp", "options": {"width": 32}, "control": True}]
    cells = expand(config(models=models, trained=[0], defenses=["none"]))
    labels = [(cell.model.label, cell.combo) for cell in cells]
    assert labels[: len(COMBOS)] == [("mlp-width=64", combo) for combo in COMBOS]
    assert labels[len(COMBOS) :] == [("mlp-width=32-control", "none")]


def test_wr_interval_beyond_the_local_steps_is_refused():
    message = error_of({**BASE, "biomod": {"combos": ["wr"], "wr_interval": 3}, "federation": {"local_steps": 2}})
    assert "biomod.wr_interval (3) exceeds federation.local_steps (2)" in message
    assert config(biomod={"combos": ["none", "ws"], "wr_interval": 3}).biomod.wr_interval == 3
