"""Real benchmarks in (issue 14): Spider and BIRD folders, explicit split files, database-disjoint
splits, and schemas pruned to fit, through the real CLI on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_metrics, tiny_config, write_config
from sqltune import cli
from sqltune.config import DataSettings
from sqltune.data import splits as data_splits

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPIDER, BIRD = FIXTURES / "spider_mini", FIXTURES / "bird_mini"
GENERATE = {"generate_samples": 8, "max_new_tokens": 8, "batch_size": 4}


def _benchmark_config(tmp: Path, source: str) -> dict:
    cfg = tiny_config(tmp, eval=GENERATE, format={"max_length": 160})
    cfg["hyperparameters"]["data"] = {"source": source, "subset": "all", "cache_dir": str(tmp / "cache")}
    return cfg


@pytest.mark.parametrize("kind", ["spider", "bird"])
def test_trains_on_a_benchmark_folder_and_scores_every_group(kind: str, tmp_path: Path) -> None:
    folder = SPIDER if kind == "spider" else BIRD
    cfg = _benchmark_config(tmp_path, f"{kind}:{folder}")
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    final = [m for m in read_metrics(tmp_path / "run") if m["group"] == "validation"][-1]
    dev = json.loads((folder / ("dev.json" if kind == "spider" else "dev/dev.json")).read_text())
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "eval-step-6.jsonl").open()]
    assert len(predictions) == min(8, len(dev))
    assert {p["question"].split("\nHint: ")[0] for p in predictions} <= {d["question"] for d in dev}  # valid = dev
    for metric in ("bleu", "exact_match", "execution_accuracy", "valid_sql"):
        assert f"eval_{metric}" in final
        for hardness in {p["hardness"] for p in predictions}:
            assert f"eval_{metric}_hardness_{hardness}" in final
        for bucket in {p["difficulty"] for p in predictions}:
            assert f"eval_{metric}_{bucket}" in final
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["schema_pruning"]["train"]["rows"] > 0


def test_evaluate_scores_the_dev_split_of_a_benchmark_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path)
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    out = tmp_path / "spider-dev.jsonl"
    assert cli.main(["evaluate", "--checkpoint", summary["latest_checkpoint"], "--data", f"spider:{SPIDER}",
                     "--max-new-tokens", "8", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.open()]
    dev = json.loads((SPIDER / "dev.json").read_text())
    assert [r["gold"] for r in rows] == [d["query"].strip() for d in dev]
    assert "spider-dev" in capsys.readouterr().out


def test_split_by_db_keeps_every_database_in_one_split(tmp_path: Path) -> None:
    cfg = DataSettings(source="synthetic", subset="all", synthetic_rows=600, split_by="db", cache_dir=str(tmp_path))
    splits = data_splits.load_splits(cfg)
    dbs = {name: set(splits[name]["db_id"]) for name in ("train", "valid", "test")}
    assert dbs["train"] and dbs["valid"] and dbs["test"]
    assert not (dbs["train"] & dbs["valid"]) and not (dbs["train"] & dbs["test"]) and not (dbs["valid"] & dbs["test"])
    assert len(dbs["train"] | dbs["valid"] | dbs["test"]) == 10  # the generator's ten domains, all used
    assert sum(len(splits[k]) for k in dbs) == len(data_splits.select(
        data_splits.read_rows(cfg, tmp_path)[0], "all", cfg.max_rows))


def test_explicit_split_files_and_a_file_that_carries_only_db_paths(tmp_path: Path) -> None:
    spider_dev = json.loads((SPIDER / "dev.json").read_text())
    spider_train = json.loads((SPIDER / "train_spider.json").read_text())

    def write(name: str, entries: list[dict]) -> Path:  # no `input`: the schema comes from the database
        path = tmp_path / name
        path.write_text("".join(json.dumps({"instruction": e["question"], "response": e["query"],
                                            "db_path": str(SPIDER / "database" / e["db_id"] / f"{e['db_id']}.sqlite")})
                                + "\n" for e in entries))
        return path

    cfg = DataSettings(train=str(write("train.jsonl", spider_train)), valid=str(write("valid.jsonl", spider_dev)),
                     subset="all", cache_dir=str(tmp_path / "cache"))
    splits = data_splits.load_splits(cfg)
    assert len(splits["train"]) == len(spider_train) and len(splits["valid"]) == len(spider_dev)
    assert len(splits["test"]) == 0
    assert all(row["input"].startswith("CREATE TABLE") for row in splits["valid"])


@pytest.mark.parametrize(("data", "expected"), [
    ({"train": "a.jsonl"}, "hyperparameters.data.train and hyperparameters.data.valid: set both"),
    ({"train": "a.jsonl", "valid": "b.jsonl", "source": "x.jsonl"}, "hyperparameters.data.source: set source, or"),
    ({"source": "spider:/no/such/folder"}, "hyperparameters.data.source: no such folder '/no/such/folder'"),
    ({"source": f"bird:{BIRD}", "split_by": "db"}, "hyperparameters.data.split_by: bird brings its own splits"),
])
def test_data_split_mistakes_are_one_line(data: dict, expected: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"]["data"] = data
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
    assert expected in capsys.readouterr().err


def test_sample_rows_come_from_each_rows_database(tmp_path: Path) -> None:
    from sqltune import prune
    from sqltune.config import FormatSettings
    from sqltune.data import benchmarks

    dev = benchmarks.benchmark_splits(f"spider:{SPIDER}")["valid"][:3]
    rows, stats = prune.prepare(dev, tokenizer=None, cfg=FormatSettings(sample_rows=2, prune_schema=False),
                                use_gold=False, name="valid")
    assert stats is None  # pruning off: no tokenizer needed
    for before, after in zip(dev, rows):
        assert after["input"].startswith(before["input"].split("\n")[0])
        assert after["input"].count("/* ") == before["input"].count("CREATE TABLE")  # one comment per table
        assert after["input"].count("\n") > before["input"].count("\n") + 2 * before["input"].count("CREATE TABLE")
