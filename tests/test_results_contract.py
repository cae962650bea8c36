"""The result-row contract: one field list for the evaluator, the store and docs/results.md; the store
refuses rows that break it; a store of another schema version is a one-line CLI error."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

import pytest

from fedsyn.cli import main
from fedsyn.errors import FedsynError
from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import parse_config
from fedsyn.results import RESULT_FIELDS, SCORE_FIELDS, ResultRow, StoreError, open_store
from fedsyn.results.fields import EXTRA_FIELDS

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"name": "contract", "models": ["lenet"], "biomod": {"combos": ["none"]}, "federation": {"clients": 2}}


def test_docs_describe_every_field() -> None:
    text = (REPO / "docs" / "results.md").read_text()
    assert [name for name in (*RESULT_FIELDS, "cell_key", *EXTRA_FIELDS) if f"`{name}`" not in text] == []


def test_fields_come_from_the_row_and_cover_the_scores() -> None:
    names = [f.name for f in fields(ResultRow)]
    assert RESULT_FIELDS == tuple(n for n in names if n not in ("cell_key", *EXTRA_FIELDS))
    assert set(SCORE_FIELDS) <= set(RESULT_FIELDS)
    row = ResultRow(cell_key="k", seed=0, round=1, partition_id=-1, attacker="informed", method="m", labels="known",
                    aggregate_of=(0, 2))
    assert set(row.as_dict()) == {"cell_key", *RESULT_FIELDS, "aggregate_of"} and row.as_dict()["aggregate_of"] == [0, 2]


def test_store_columns_are_the_contract(tmp_path: Path) -> None:
    cell = expand(parse_config(CONFIG))[0]
    row = ResultRow(cell_key=cell.key, seed=cell.seed, round=1, partition_id=0, attacker="oblivious", method="m",
                    labels="known", status="not applicable", error="why not").as_dict()
    with open_store(tmp_path) as store:
        store.commit_cell(cell, [row])
        with pytest.raises(StoreError, match="method"):
            store.commit_cell(cell, [{k: v for k, v in row.items() if k != "method"}])
        (stored,) = store.results()
    assert {name: stored[name] for name in RESULT_FIELDS} == {name: row[name] for name in RESULT_FIELDS}


def test_a_store_of_another_version_is_a_one_line_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with open_store(tmp_path):
        pass
    with sqlite3.connect(tmp_path / "results.db") as db:
        db.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path, readonly=True)
    assert isinstance(caught.value, FedsynError)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schema version 1" in err and "Traceback" not in err


def test_reference_scores_are_those_of_the_mean_colour() -> None:
    """ref_mse of the trivial reconstruction is the images' mean squared distance to the mean colour."""
    import torch

    from fedsyn.evaluation.evaluator import reference_scores

    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean = (0.2, 0.5, 0.7)
    scores = reference_scores(images, mean)
    expected = ((images - torch.tensor(mean).view(1, 3, 1, 1)) ** 2).mean().item()
    assert scores["ref_mse"] == pytest.approx(expected, rel=1e-5)
    assert set(scores) == {"ref_mse", "ref_psnr", "ref_ssim", "ref_mse_pct"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a database, it is a text file that happens to be called results.db\n" * 20, "cannot be read"),
        (None, "not a fedsyn results store"),
        (b"", "not a fedsyn results store"),
    ],
    ids=["damaged", "foreign", "empty"],
)
def test_report_on_a_damaged_or_foreign_database_is_one_line(tmp_path, capsys, content, expected) -> None:
    path = tmp_path / "results.db"
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE photos (name TEXT)")
    else:
        path.write_bytes(content)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and str(path) in err and "Traceback" not in err


def test_a_version_2_store_gets_its_seed_column(tmp_path: Path) -> None:
    """A store written before repeats (schema 2, no ``seed`` column) is upgraded in place; its rows get their
    cell's seed, and a read-only open sees the upgraded store."""
    cell = expand(parse_config({**CONFIG, "seed": 7}))[0]
    row = ResultRow(cell_key=cell.key, seed=7, round=1, partition_id=0, attacker="oblivious", method="m",
                    labels="known", status="rejected", error="NaN").as_dict()
    with open_store(tmp_path) as store:
        store.commit_cell(cell, [row])
    with sqlite3.connect(tmp_path / "results.db") as db:
        db.execute("ALTER TABLE results DROP COLUMN seed")
        db.execute("UPDATE meta SET value = '2' WHERE name = 'schema_version'")
    with open_store(tmp_path, readonly=True) as store:
        (stored,) = store.results()
        assert stored["seed"] == 7 and store.meta("schema_version") == "3"
    with open_store(tmp_path) as store, pytest.raises(StoreError, match="seed 8"):
        store.commit_cell(cell, [{**row, "seed": 8}])
