"""The command line: commands that start light, a user's mistake in one line (exit 2), our own
bugs with their traceback."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_config, write_config
from sqltune import cli
from sqltune.study import compare

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


# ---- light commands ------------------------------------------------------------------------------


def test_compare_and_help_and_config_errors_never_import_torch(tmp_path: Path) -> None:
    bad = write_config(tmp_path, tiny_config(tmp_path, lora={"r": 0}))
    code = f"""
import sys
import sqltune.study.compare
from sqltune import cli
for argv in (["compare", "--help"], ["train", "--help"], ["evaluate", "--help"], ["search", "--help"]):
    try:
        cli.main(argv)
    except SystemExit as e:
        assert e.code == 0, argv
assert cli.main(["train", {str(bad)!r}]) == 2
assert cli.main(["compare", {str(tmp_path / "nothing")!r}, "--output", {str(tmp_path / "report")!r}]) == 2
heavy = sorted(m for m in ("torch", "transformers", "determined", "datasets") if m in sys.modules)
print("heavy:", heavy)
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout
    assert "hyperparameters.lora.r: input should be greater than 0 (got 0)" in out.stderr


# ---- user errors: one line, exit 2; our own bugs: a traceback -------------------------------------


def test_unknown_checkpoint_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DET_MASTER", raising=False)
    assert cli.main(["predict", "how many?", "--checkpoint", "0000-dead"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sqltune: error: --checkpoint: '0000-dead' is neither") and "\n" not in err


def test_unreachable_master_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("DET_MASTER", "http://127.0.0.1:9")  # a closed port
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached login
    assert cli.main(["compare", "--experiment", "3", "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("sqltune: error: can't reach the Determined master at http://127.0.0.1:9: "
                   "is DET_MASTER right, and the master up?")


def test_a_running_search_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_config(tmp_path)
    cfg["searcher"] = {"name": "grid", "metric": "eval_loss", "max_trials": 2}
    cfg["hyperparameters"]["lora"]["r"] = {"type": "categorical", "vals": [4, 8]}
    folder = Path(cfg["hyperparameters"]["training_args"]["output_dir"])
    folder.mkdir(parents=True)
    with open(folder / ".search.lock", "w") as held:  # what a running search's processes hold
        fcntl.flock(held, fcntl.LOCK_SH)
        assert cli.main(["search", str(write_config(tmp_path, cfg))]) == 2
    err = capsys.readouterr().err
    assert f"sqltune: error: {folder}: another `sqltune search` is running there" in err
    assert not list(folder.glob("trial-*"))


def test_our_own_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An ImportError or FileNotFoundError from inside sqltune is a bug, not a user's mistake."""
    def broken(*args: object) -> int:
        raise FileNotFoundError(2, "No such file or directory", "/our/bug")

    monkeypatch.setattr(compare, "main", broken)
    with pytest.raises(FileNotFoundError, match="/our/bug"):
        cli.main(["compare", str(tmp_path)])
