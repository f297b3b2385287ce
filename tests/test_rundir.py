"""The run folder's owner (rundir.py): metric lines, checkpoint storage and its index, the config copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_config
from sqltune import cli, manifest, rundir
from sqltune.errors import CheckpointDamaged, CheckpointNotFound

REPO = Path(__file__).resolve().parents[1]


# ---- the run folder ------------------------------------------------------------------------------


def test_metrics_lines_read_back_by_group_and_step(tmp_path: Path) -> None:
    run = rundir.RunFolder(tmp_path)
    run.append_metrics("validation", 0, {"eval_loss": 2.0, "batches": 0})
    run.append_metrics("training", 1, {"loss": 1.5})
    run.append_metrics("validation", 2, {"eval_loss": 1.0})
    run.append_metrics("validation", 2, {"eval_loss": 0.9})  # after a resume: the last line counts
    with open(tmp_path / rundir.METRICS, "a") as f:
        f.write('{"group": "validation", "st')  # torn by a kill
    curves = run.curves()
    assert curves["training"] == {1: {"loss": 1.5}}
    assert curves["validation"] == {0: {"eval_loss": 2.0, "batches": 0}, 2: {"eval_loss": 0.9}}
    run.record_checkpoint("abc", 2, "checkpoint-2")
    assert run.latest_checkpoint() == "abc"
    run.clear()
    assert run.latest_checkpoint() is None and run.curves() == {"training": {}, "validation": {}}


def test_storage_follows_the_yamls_checkpoint_storage(tmp_path: Path) -> None:
    assert rundir.storage_dir(None, tmp_path / "run") == tmp_path / "run" / "checkpoints"
    shared = {"type": "shared_fs", "host_path": str(tmp_path / "shared"), "storage_path": "ckpts"}
    assert rundir.storage_dir(shared, tmp_path / "run") == tmp_path / "shared" / "ckpts"
    assert rundir.storage_dir({"type": "directory", "container_path": str(tmp_path / "d")}, "x") == tmp_path / "d"


def _stored(storage: Path, uuid: str, *steps: int) -> Path:
    for step in steps:
        run = rundir.RunFolder(storage, hparams={"lora": {"r": 4}})
        run.stamp_checkpoint(ckpt := _mkdir(storage / uuid / f"checkpoint-{step}"))
        run.seal_checkpoint(ckpt, manifest.entries(ckpt))
    return storage / uuid


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_a_uuid_is_found_from_any_folder_through_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))
    storage = tmp_path / "project" / "runs" / "a" / "checkpoints"
    stored = _stored(storage, "1111-aaaa", 3, 12)
    elsewhere = _mkdir(tmp_path / "elsewhere")
    monkeypatch.chdir(elsewhere)
    assert rundir.find_checkpoint("1111-aaaa") is None  # not below this folder, not indexed yet
    rundir.remember_storage(storage)
    rundir.remember_storage(tmp_path / "gone")  # a storage deleted later is dropped from the index
    rundir.remember_storage(storage)
    assert rundir.known_storages() == [storage.resolve()]
    assert rundir.find_checkpoint("1111-aaaa") == storage.resolve() / "1111-aaaa"
    assert cli.checkpoint_folder("1111-aaaa") == storage.resolve() / "1111-aaaa" / "checkpoint-12"  # the highest step
    assert cli.checkpoint_folder(str(stored / "checkpoint-3")) == stored / "checkpoint-3"
    with pytest.raises(CheckpointNotFound, match="'2222-bbbb' is neither a folder nor the UUID"):
        cli.checkpoint_folder("2222-bbbb")
    with pytest.raises(CheckpointNotFound, match="holds no checkpoint-N folder"):
        cli.checkpoint_folder(str(elsewhere))
    (stored / "checkpoint-12" / manifest.MANIFEST).unlink()  # a store cut short
    with pytest.raises(CheckpointDamaged, match="checkpoint-12/sqltune_manifest.json is missing"):
        cli.checkpoint_folder("1111-aaaa")


def test_a_run_folder_stands_for_its_latest_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))
    run = rundir.RunFolder(_mkdir(tmp_path / "run"))
    _stored(run.path / "checkpoints", "1111-aaaa", 40)
    _stored(run.path / "checkpoints", "2222-bbbb", 80)
    run.record_checkpoint("1111-aaaa", 40, "checkpoint-40")  # the pointer wins, not the highest step
    monkeypatch.chdir(_mkdir(tmp_path / "elsewhere"))
    assert cli.checkpoint_folder(str(run.path)) == run.path / "checkpoints" / "1111-aaaa" / "checkpoint-40"
    run.record_checkpoint("3333-cccc", 120, "checkpoint-120")  # deleted, or never downloaded
    with pytest.raises(CheckpointNotFound, match="names its latest checkpoint 3333-cccc, which is not on this machine"):
        cli.checkpoint_folder(str(run.path))


def test_a_torn_index_counts_as_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path))
    (tmp_path / rundir.STORAGE_INDEX).write_text('["/x", ')
    assert rundir.known_storages() == []
    rundir.remember_storage(_mkdir(tmp_path / "s"))
    assert rundir.known_storages() == [(tmp_path / "s").resolve()]


def test_the_file_names_have_one_owner() -> None:
    """Each run-folder file name is spelled in rundir.py and nowhere else in the package."""
    names = (rundir.SUMMARY, rundir.METRICS, rundir.LATEST, rundir.CONFIG_COPY, rundir.LOCK)
    elsewhere = {str(p.relative_to(REPO)): [n for n in names if n in p.read_text()]
                 for p in (REPO / "src" / "sqltune").rglob("*.py") if p.name != "rundir.py"}
    assert {path: found for path, found in elsewhere.items() if found} == {}


def test_a_config_copy_names_its_prompt_layout_and_an_old_one_reads_as_the_reference(tmp_path: Path) -> None:
    """Every copy written now names format.layout, also when the YAML left it out; a copy from
    before the option existed trained on the reference layout and must not get today's default."""
    from sqltune import config

    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"].pop("format", None)
    exp = config.build(cfg)
    assert exp.resolved["format"]["layout"] == exp.hparams.format.layout == "schema_first"
    new, old, none = (_mkdir(tmp_path / n) for n in ("new", "old", "none"))
    rundir.write_config_copy(new, exp.resolved)
    rundir.write_config_copy(old, {"format": {"max_length": 256}, "lora": {"r": 4}})
    rundir.write_config_copy(none, {"lora": {"r": 4}})
    assert rundir.read_config_copy(new)["format"]["layout"] == "schema_first"
    assert rundir.read_config_copy(old)["format"] == {"layout": "reference", "max_length": 256}
    assert rundir.read_config_copy(none)["format"] == {"layout": "reference"}
    assert rundir.read_config_copy(tmp_path / "missing") is None
