"""fedsyn.report.export: result rows with their cell settings as one tidy CSV (and Parquet with pyarrow)."""

from __future__ import annotations

import csv
import importlib.util
import math

import pytest

from fedsyn.report.export import flatten, write_export

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def result_rows() -> list[dict]:
    """Two result rows shaped as the store returns them, each with its cell's settings attached."""
    settings = {"model": "convnet", "trained": 0, "combo": "fl+wr", "defense": "none", "options": {"width": 16}}
    return [
        {**settings, "seed": 0, "round": 1, "partition_id": 0, "status": "ok", "psnr": 14.25, "lpips": None,
         "lpips_missing": "no backbone", "fl": True, "layers": ["conv1", "fc"]},
        {**settings, "seed": 1, "round": 1, "partition_id": 0, "status": "ok", "psnr": math.inf, "lpips": 0.41,
         "fl": True, "layers": ["conv1"], "label_acc": 1.0},
    ]  # fmt: skip


def test_csv_has_one_line_per_row_and_one_column_per_variable(tmp_path):
    written = write_export(result_rows(), tmp_path / "out" / "results.csv", parquet=False)
    with open(written.csv, newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert written.rows == len(lines) == 2
    assert list(lines[0]) == list(written.columns)
    assert written.columns[:5] == ("model", "trained", "combo", "defense", "options.width")
    assert written.columns[-1] == "label_acc"  # a column only the second row has comes last
    first, second = lines
    assert first["options.width"] == "16" and first["psnr"] == "14.25" and first["lpips"] == ""
    assert first["layers"] == '["conv1", "fc"]' and first["fl"] == "True" and first["label_acc"] == ""
    assert float(second["psnr"]) == math.inf and float(second["lpips"]) == 0.41 and second["lpips_missing"] == ""
    assert written.parquet is None and written.parquet_skipped == "Parquet was not asked for"


def test_flatten_refuses_two_fields_that_become_one_column():
    assert flatten({"a": {"b": {"c": 1}}, "d": (1, 2)}) == {"a.b.c": 1, "d": "[1, 2]"}
    with pytest.raises(ValueError, match="column 'a.b'"):
        flatten({"a.b": 1, "a": {"b": 2}})


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed: the Parquet file is written (tested below)")
def test_without_pyarrow_only_the_csv_is_written_and_it_says_so(tmp_path):
    written = write_export(result_rows(), tmp_path / "results.csv")
    assert written.csv.is_file() and written.parquet is None
    assert "pyarrow is not installed" in written.parquet_skipped
    assert not (tmp_path / "results.parquet").exists()


def test_parquet_holds_the_same_table(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (optional)")
    written = write_export(result_rows(), tmp_path / "results.csv")
    assert written.parquet == tmp_path / "results.parquet" and written.parquet_skipped is None
    table = pq.read_table(written.parquet)
    assert tuple(table.column_names) == written.columns
    columns = table.to_pydict()
    assert columns["psnr"] == [14.25, math.inf] and columns["lpips"] == [None, 0.41]
    assert columns["options.width"] == [16, 16] and columns["label_acc"] == [None, 1.0]

    with pytest.raises(ValueError, match="column 'trained' mixes value types"):
        write_export([{"trained": 0}, {"trained": "yes"}], tmp_path / "mixed.csv")
