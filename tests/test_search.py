"""`sqltune search`: the shipped search YAMLs, Determined's grid, and real Optuna searches of a tiny
Llama on CPU, killed and resumed, pruned by successive halving, and run two trials at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import read_metrics, tiny_config, write_config
from sqltune import cli, config
from sqltune.study import search
from sqltune.errors import ConfigError
from sqltune.study.space import Param, grid_points, yaml_text

REPO = Path(__file__).resolve().parents[1]
# the shipped searches over LoRA's r (test_configs.py checks every YAML against the 0.38.1 schemas)
SEARCH_YAMLS = sorted(p for p in (REPO / "experiments").glob("*.yaml") if "-r-" in p.name)
PAIRS = [{"r": 4, "lora_alpha": 8}, {"r": 8, "lora_alpha": 16}, {"r": 16, "lora_alpha": 32}]


@pytest.mark.parametrize("path", SEARCH_YAMLS, ids=lambda p: p.name)
def test_every_trial_ties_lora_alpha_to_2r(path: Path, tmp_path: Path) -> None:
    s = search.load(path)
    [lora] = [p for p in s.params if p.name == "lora"]
    for pair in lora.grid():
        assert pair["lora_alpha"] == 2 * pair["r"], pair
        exp = config.build(s.raw, s.trial_overrides({**{p.name: p.first() for p in s.params}, "lora": pair},
                                                     tmp_path / "trial-0"), path)
        assert (exp.hparams.lora.r, exp.hparams.lora.lora_alpha) == (pair["r"], pair["lora_alpha"])
        assert exp.hparams.training_args["output_dir"] == str(tmp_path / "trial-0")


def test_grid_yaml_expands_to_five_ranks() -> None:
    s = search.load(REPO / "experiments" / "lora-r-grid.yaml")
    ranks = [4, 8, 16, 32, 64]
    assert grid_points(s.params) == [{"lora": {"r": r, "lora_alpha": 2 * r}} for r in ranks]
    assert s.n_trials == 5 and s.folder == Path("runs/lora-r-grid")


def test_asha_yaml_max_time_is_max_steps_and_rungs_are_evaluated() -> None:
    s = search.load(REPO / "experiments" / "lora-r-asha.yaml")
    targs = s.raw["hyperparameters"]["training_args"]
    assert s.searcher["time_metric"] == "batches" and s.searcher["max_time"] == targs["max_steps"] == 1600
    assert s.rungs() == [100, 400, 1600]
    assert all(rung % targs["eval_steps"] == 0 for rung in s.rungs())
    assert "max_length" not in s.searcher
    random = search.load(REPO / "experiments" / "lora-r-lr-random.yaml")
    assert random.n_trials == 12 and [p.name for p in random.params] == ["lora", "training_args.learning_rate"]


def test_grid_points_are_determineds() -> None:
    """master/pkg/searcher/grid.go: count points, ints rounded half away from zero, clamped."""
    assert Param("x", {"type": "int", "minval": 1, "maxval": 10, "count": 4}).grid() == [1, 4, 7, 10]
    assert Param("x", {"type": "int", "minval": 0, "maxval": 2, "count": 9}).grid() == [0, 1, 2]
    assert Param("x", {"type": "int", "minval": 1, "maxval": 4, "count": 1}).grid() == [3]
    assert Param("x", {"type": "double", "minval": 0, "maxval": 1, "count": 3}).grid() == [0, 0.5, 1]
    assert Param("x", {"type": "log", "base": 10, "minval": -4, "maxval": -2, "count": 3}).grid() == pytest.approx(
        [1e-4, 1e-3, 1e-2])
    params = [Param("a", {"type": "categorical", "vals": ["x", "y"]}),
              Param("b", {"type": "int", "minval": 1, "maxval": 2, "count": 2})]
    assert grid_points(params) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}, {"a": "y", "b": 1}, {"a": "y", "b": 2}]


def test_flat_and_nested_spaces_name_the_same_hyperparameters() -> None:
    nested = {"lora": {"r": {"type": "categorical", "vals": [4, 8]}}, "training_args": {"max_steps": 6}}
    flat = {"lora.r": {"type": "categorical", "vals": [4, 8]}, "training_args": {"max_steps": 6}}
    assert search.search_space(nested) == search.search_space(flat) == [Param("lora.r", nested["lora"]["r"])]


@pytest.mark.parametrize("value", [1e-5, 0.0, 3, "runs/a b:c", {"r": 8, "lora_alpha": 16}, True, None])
def test_override_text_reads_back_unchanged(value: object) -> None:
    [(key, parsed)] = config.parse_overrides([f"k={yaml_text(value)}"])
    assert parsed == value and type(parsed) is type(value)


def test_bad_search_config_reports_every_problem(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    cfg["searcher"] = {"name": "adaptive_asha", "metric": "loss", "max_trials": 2, "max_time": 5}
    cfg["hyperparameters"]["training_args"]["learning_rate"] = {"type": "double", "minval": 0, "maxval": 1}
    cfg["hyperparameters"]["lora"] = {"type": "categorical", "vals": PAIRS}
    path = write_config(tmp_path, cfg)
    with pytest.raises(ConfigError) as e:
        search.load(path, ["lora.r=4"])
    text = str(e.value)
    assert "searcher.metric: expected a validation metric" in text
    assert "searcher.time_metric: adaptive_asha on Determined 0.38 needs `time_metric: batches`" in text
    assert "--set lora.r: lora is searched as a whole; fix it with --set lora=VALUE" in text
    cfg["searcher"] = {"name": "grid", "metric": "eval_loss"}
    with pytest.raises(ConfigError, match=r"training_args.learning_rate: grid search needs `count`"):
        search.load(write_config(tmp_path, cfg))
    cfg["searcher"] = {"name": "single", "metric": "eval_loss"}
    with pytest.raises(ConfigError, match="there is nothing to search: use `sqltune train`"):
        search.load(write_config(tmp_path, cfg))
    cfg["searcher"] = {"name": "adaptive_asha", "metric": "eval_loss", "max_trials": 2, "time_metric": "batches",
                       "max_time": 5}
    with pytest.raises(ConfigError, match=r"searcher.max_time \(5 batches\) must equal training_args.max_steps \(6\)"):
        search.load(write_config(tmp_path, cfg))


# ---- real searches ---------------------------------------------------------------------------


def grid_config(tmp: Path) -> dict:
    cfg = tiny_config(tmp)
    cfg["searcher"] = {"name": "grid", "metric": "eval_loss", "smaller_is_better": True}
    cfg["hyperparameters"]["lora"] = {"type": "categorical", "vals": PAIRS}
    cfg["hyperparameters"]["training_args"]["output_dir"] = str(tmp / "search")
    return cfg


def load_study(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{folder / 'study.db'}")


KILL_IN_TRIAL_1 = """
import os, signal, sys
from sqltune import cli, core_api

save = core_api.CoreCallback.on_save

def on_save(self, args, state, control, **kwargs):  # SIGKILL right after trial-1's first checkpoint
    save(self, args, state, control, **kwargs)
    if args.output_dir.rstrip("/").endswith("trial-1"):
        os.kill(os.getpid(), signal.SIGKILL)

core_api.CoreCallback.on_save = on_save
sys.exit(cli.main(["search", sys.argv[1]]))
"""


def test_grid_search_killed_mid_trial_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    path = write_config(tmp_path, grid_config(tmp_path))
    folder = tmp_path / "search"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_TRIAL_1, str(path)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (folder / "trial-0" / "summary.json").exists()
    assert (folder / "trial-1" / "latest_checkpoint.json").exists() and not (folder / "trial-1" / "summary.json").exists()
    assert [t.state for t in load_study(folder).trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    first = (folder / "trial-0" / "summary.json").stat().st_mtime_ns

    assert cli.main(["search", str(path)]) == 0
    study = load_study(folder)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 1  # the killed attempt
    # a folder is named after its first attempt: trial 2 is the retry of 1, so the third point is trial 3
    assert len(done) == 3 and {t.user_attrs["run_dir"] for t in done} == {"trial-0", "trial-1", "trial-3"}
    assert sorted(json.loads(t.params["lora"])["r"] for t in done) == [4, 8, 16]
    assert all(t.value == pytest.approx(t.user_attrs["validation"]["eval_loss"]) for t in done)
    [retry] = [t for t in done if "retry_of" in t.user_attrs]
    assert (retry.number, retry.user_attrs["retry_of"], retry.user_attrs["run_dir"]) == (2, 1, "trial-1")
    assert (folder / "trial-0" / "summary.json").stat().st_mtime_ns == first  # not retrained
    steps = [m["step"] for m in read_metrics(folder / "trial-1") if m["group"] == "training"]
    assert steps.count(1) == 1 and steps[-3:] == [4, 5, 6]  # resumed from checkpoint-3, not from scratch
    assert json.loads((folder / "trial-1" / "summary.json").read_text())["global_step"] == 6

    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("trial-*/summary.json")}
    assert cli.main(["search", str(path)]) == 0  # a finished search: nothing to run
    assert len(load_study(folder).trials) == 4 and mtimes == {p: p.stat().st_mtime_ns for p in mtimes}

    changed = grid_config(tmp_path)
    changed["hyperparameters"]["lora"]["vals"] = PAIRS[:2]
    assert cli.main(["search", str(write_config(tmp_path, changed))]) == 2  # refused, with a message


def test_adaptive_asha_prunes_trials_that_cannot_improve(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    cfg["searcher"] = {"name": "adaptive_asha", "metric": "eval_loss", "smaller_is_better": True, "max_trials": 3,
                       "time_metric": "batches", "max_time": 6, "divisor": 2, "max_rungs": 2, "mode": "aggressive"}
    cfg["reproducibility"] = {"experiment_seed": 6}  # draws 3e-3, 0, 0: the zeros meet a better trial at step 3
    targs = cfg["hyperparameters"]["training_args"]
    targs.update(output_dir=str(tmp_path / "asha"), learning_rate={"type": "categorical", "vals": [3.0e-3, 0.0]})
    path = write_config(tmp_path, cfg)
    assert search.load(path).rungs() == [3, 6]
    assert cli.main(["search", str(path)]) == 0

    trials = load_study(tmp_path / "asha").trials
    lr = {t.number: t.params["training_args.learning_rate"] for t in trials}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(lr[t.number] == 0.0 for t in pruned)
    assert all(t.state == TrialState.COMPLETE for t in trials if lr[t.number] > 0)
    for t in pruned:  # stopped at the first rung: an ordinary, shorter run folder
        summary = json.loads((tmp_path / "asha" / t.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["global_step"] == 3 and t.user_attrs["global_step"] == 3
        assert t.intermediate_values == {3: pytest.approx(summary["validation"]["eval_loss"])}


def test_parallel_search_runs_two_trials_at_once(tmp_path: Path) -> None:
    cfg = grid_config(tmp_path)
    cfg["hyperparameters"]["lora"]["vals"] = PAIRS[:2]
    # long enough (a few seconds each) that two workers starting a moment apart still overlap
    cfg["hyperparameters"]["training_args"].update(max_steps=30, eval_steps=15, save_steps=15)
    path = write_config(tmp_path, cfg)
    assert cli.main(["search", str(path), "--parallel", "2"]) == 0
    trials = load_study(tmp_path / "search").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    spans = []
    for run_dir in ("trial-0", "trial-1"):
        times = [m["time"] for m in read_metrics(tmp_path / "search" / run_dir)]
        spans.append((min(times), max(times)))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1  # the two trials overlapped in time
    stored = [sorted((tmp_path / "search" / t / "checkpoints").glob("*/checkpoint-30/sqltune_config.yaml"))
              for t in ("trial-0", "trial-1")]
    assert [len(s) for s in stored] == [1, 1]
    lora = [yaml.safe_load(s[0].read_text())["lora"] for s in stored]  # each trial's own values, beside its checkpoint
    assert sorted((x["r"], x["lora_alpha"]) for x in lora) == [(4, 8), (8, 16)]
