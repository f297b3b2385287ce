"""Difficulty buckets, the reference's split, file sources and their errors, the on-disk cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sqltune import cli
from sqltune.data import rows as data_rows, splits as data_splits
from sqltune.errors import DataError
from sqltune.config import DataSettings

from conftest import tiny_config, write_config


def row(words: int, response: str = "SELECT 1") -> dict:
    """A row whose instruction + input + response has exactly `words` words."""
    rest = words - len(response.split()) - 1
    return {"instruction": "q", "input": " ".join(["w"] * rest), "response": response}


@pytest.mark.parametrize("words,bucket", [
    (9, None), (10, "easy"), (100, "easy"), (101, "medium"), (200, "medium"),
    (201, "hard"), (800, "hard"), (801, None),
])
def test_word_count_buckets_match_the_reference_rule(words: int, bucket: str | None) -> None:
    r = row(words)
    assert data_rows.word_count(r) == words
    assert data_rows.difficulty(r) == bucket


def test_word_count_splits_each_column_on_whitespace() -> None:
    r = {"instruction": "How many\tsingers?", "input": "CREATE TABLE t (a INT)\n", "response": " SELECT  1 "}
    assert data_rows.word_count(r) == 3 + 5 + 2


def test_select_takes_first_rows_of_the_bucket_in_source_order() -> None:
    rows = [row(50), row(150), row(60), row(300), row(70), row(5)]
    for i, r in enumerate(rows):
        r["instruction"] = f"q{i}"
    easy = data_splits.select(rows, "easy", max_rows=2)
    assert [r["instruction"] for r in easy] == ["q0", "q2"]
    everything = data_splits.select(rows, "all", max_rows=100)
    assert [r["difficulty"] for r in everything] == ["easy", "medium", "easy", "hard", "easy"]


def test_split_is_the_reference_80_10_10_with_seed_123() -> None:
    import datasets

    rows = [{**row(20), "instruction": f"q{i}"} for i in range(100)]
    splits = data_splits.split(rows)
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "valid": 10, "test": 10}
    # the same calls the reference makes, on the same rows
    ds = datasets.Dataset.from_list(rows).train_test_split(train_size=0.8, seed=123)
    rest = ds["test"].train_test_split(test_size=0.1 / (0.1 + 0.1), seed=123)
    assert splits["train"]["instruction"] == ds["train"]["instruction"]
    assert splits["valid"]["instruction"] == rest["train"]["instruction"]
    assert splits["test"]["instruction"] == rest["test"]["instruction"]
    names = [set(s["instruction"]) for s in splits.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_file_type_loads_and_bad_rows_are_skipped_and_counted(tmp_path: Path, suffix: str) -> None:
    rows = [{**row(20), "instruction": f"q{i}"} for i in range(30)]
    rows[3]["response"] = ""  # empty response: skipped
    _write(tmp_path / f"a{suffix}", rows)
    got, skipped = data_splits.read_rows(DataSettings(source=str(tmp_path / f"a{suffix}")), tmp_path)
    assert len(got) == 29 and len(skipped) == 1 and "row 4" in skipped[0] and "response" in skipped[0]


def test_glob_source_reads_every_file_in_order(tmp_path: Path) -> None:
    _write(tmp_path / "part-1.jsonl", [{**row(20), "instruction": "a"}])
    _write(tmp_path / "part-2.jsonl", [{**row(20), "instruction": "b"}])
    got, _ = data_splits.read_rows(DataSettings(source=str(tmp_path / "part-*.jsonl")), tmp_path)
    assert [r["instruction"] for r in got] == ["a", "b"]


def test_cache_is_built_once_and_reused(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", [{**row(20), "instruction": f"q{i}"} for i in range(40)])
    cfg = DataSettings(source=str(src), cache_dir=str(tmp_path / "cache"), max_eval_samples=2)
    first = data_splits.load_splits(cfg)
    built = sorted(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert len(built) == 1 and len(first["valid"]) == 2
    stamp = (built[0] / "stats.json").stat().st_mtime_ns
    second = data_splits.load_splits(cfg)
    assert (built[0] / "stats.json").stat().st_mtime_ns == stamp
    assert second["train"]["instruction"] == first["train"]["instruction"]


def test_missing_file_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"]["data"]["source"] = str(tmp_path / "nope.jsonl")
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
    err = capsys.readouterr().err
    assert "data.source: no such file" in err and "nope.jsonl" in err and "Traceback" not in err


def test_file_missing_a_column_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path)
    bad = _write(tmp_path / "bad.jsonl", [{"instruction": "q", "input": "t"}] * 20)
    cfg["hyperparameters"]["data"]["source"] = str(bad)
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
    err = capsys.readouterr().err
    assert "missing column 'response'" in err and "bad.jsonl" in err and "Traceback" not in err


def test_broken_json_line_names_the_row(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(row(20)) + "\n{not json\n")
    with pytest.raises(DataError, match=r"x.jsonl row 2: not valid JSON"):
        data_splits.read_rows(DataSettings(source=str(p)), tmp_path)


def test_json_file_that_is_not_a_list_of_rows_is_one_clear_message(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps("just a string"))
    with pytest.raises(DataError, match=r"x.json: expected a list of rows, got str"):
        data_splits.read_rows(DataSettings(source=str(p)), tmp_path)


# ---- malformed files (issue 12): a counted skip or one clear message, never a traceback ----------------

GOOD = {"instruction": "Show names", "input": "CREATE TABLE t (name TEXT)", "response": "SELECT name FROM t"}


def _read(path: Path) -> tuple[list, list]:
    return data_splits.read_rows(DataSettings(source=str(path)), path.parent)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("empty.jsonl", b"", "no rows (an empty file, or a header only)"),
    ("header.csv", b"instruction,input,response\n", "no rows (an empty file, or a header only)"),
    ("binary.jsonl", bytes(range(256)) * 4, "not UTF-8 text"),
    ("latin1.csv", "instruction,input,response\nQuelle année?,CREATE TABLE t (a),SELECT a\n".encode("latin-1"),
     "not UTF-8 text"),
    ("binary.parquet", b"PAR1" + bytes(range(200)), "not a readable Parquet file"),
])
def test_unreadable_file_is_one_message_naming_it(name: str, content: bytes, expected: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="not UTF-8|no rows|Parquet") as err:
        _read(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    cfg = tiny_config(tmp_path, data={"source": str(path)})
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
    out = capsys.readouterr().err
    assert "Traceback" not in out and expected in out.rstrip().splitlines()[-1]


def test_nan_huge_and_mixed_cells_are_skipped_or_kept_as_text(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [GOOD, {**GOOD, "input": None}, {**GOOD, "response": "x" * 10_000_000}]  # a null cell, a 10 MB cell
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    kept, skipped = _read(tmp_path / "rows.parquet")
    assert kept == [GOOD] and len(skipped) == 2 and "longer than 1,000,000" in skipped[1], skipped

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(json.dumps(r) for r in [GOOD, {**GOOD, "instruction": 42}, {**GOOD, "input": float("nan")}]))
    kept, skipped = _read(mixed)
    assert [r["instruction"] for r in kept] == ["Show names", "42"] and skipped == ["mixed.jsonl row 3: missing 'input'"]

    big = tmp_path / "big.csv"
    with open(big, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data_rows.COLUMNS))
        w.writeheader()
        w.writerow(GOOD)
        w.writerow({**GOOD, "input": "y" * 10_000_000})  # over csv's default 128 kB field limit
    kept, skipped = _read(big)
    assert kept == [GOOD] and skipped == ["big.csv row 2: 'input' longer than 1,000,000 characters"]
