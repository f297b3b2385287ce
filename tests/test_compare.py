"""`sqltune compare` on real runs (a LoRA rank grid, a full fine-tune, and folders it must skip),
and on trials built from the Determined SDK's own classes, as `--experiment` receives them."""

from __future__ import annotations

import base64
import datetime
import html
import json
import re
import shutil
from pathlib import Path

import pytest
from determined.common.api import bindings
from determined.experimental import client
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_config, write_config
from sqltune import cli
from sqltune.study import compare
from sqltune.study import runs as study_runs

PAIRS = [{"r": 4, "lora_alpha": 8}, {"r": 8, "lora_alpha": 16}]
QUICK = {"max_steps": 4, "eval_steps": 2, "save_steps": 4}  # two evaluations, one checkpoint


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/grid (a 2-trial search), root/full (a full fine-tune), and three folders to skip."""
    root = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(root, eval={"generate_samples": 4, "max_new_tokens": 8, "batch_size": 4})
    cfg["hyperparameters"]["training_args"].update(QUICK, output_dir=str(root / "grid"))
    cfg["searcher"] = {"name": "grid", "metric": "eval_loss", "smaller_is_better": True}
    cfg["hyperparameters"]["lora"] = {"type": "categorical", "vals": PAIRS}
    assert cli.main(["search", str(write_config(root, cfg, "grid.yaml"))]) == 0

    full = tiny_config(root, lora=False, eval={"generate_samples": 4, "max_new_tokens": 8, "batch_size": 4})
    full["hyperparameters"]["training_args"].update(QUICK, output_dir=str(root / "full"))
    assert cli.main(["train", str(write_config(root, full, "full.yaml"))]) == 0

    killed = root / "killed"  # what a run killed before its end leaves: metrics, no summary
    killed.mkdir()
    shutil.copy(root / "full" / "metrics.jsonl", killed / "metrics.jsonl")
    (root / "other").mkdir()  # another tool's folder
    (root / "other" / "events.out.tfevents.1.host").write_bytes(b"\0")
    (root / "torn").mkdir()  # a summary.json cut short
    (root / "torn" / "summary.json").write_text('{"global_step": 4, "max_st')
    return root


def test_compare_writes_html_with_every_run_and_plot(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [runs / "grid", runs / "full", runs / "killed", runs / "other", runs / "torn", runs / "missing"]
    assert cli.main(["compare", *map(str, args), "--output", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()

    names = ["grid/trial-0", "grid/trial-1", "full"]
    table = page[page.index('<table id="runs">'):page.index("</table>")]
    rows = re.findall(r"<tr><td>\d+</td><td>([^<]+)</td><td>[^<]+</td><td>([^<]+)</td>", table)
    assert sorted(r[0] for r in rows) == sorted(names)
    assert {html.unescape(method) for _, method in rows} == {"LoRA r=4 α=8", "LoRA r=8 α=16", "full"}
    losses = [json.loads((runs / n / "summary.json").read_text())["validation"]["eval_loss"] for n in
              ("grid/trial-0", "grid/trial-1", "full")]
    best_first = [n for _, n in sorted(zip(losses, names))]
    assert [r[0] for r in rows] == best_first  # ranked by the searcher metric, smaller first

    pngs = sorted(p.stem for p in (tmp_path / "report" / "plots").glob("*.png"))
    for plot in ("train_loss", "eval_loss", "eval_accuracy", "eval_bleu", "metric_vs_r", "per_difficulty", "resources"):
        assert plot in pngs
    for stem in pngs:  # each one embedded, as a real PNG: the page stands alone
        data = re.search(rf'<img alt="{stem}" src="data:image/png;base64,([^"]+)"', page).group(1)
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"

    skipped = page[page.index('<ul id="skipped">'):]
    assert "killed: no summary.json (killed mid-run, or still running)" in skipped
    assert "other: not a sqltune run or search folder" in skipped
    assert "torn: unreadable summary.json" in skipped and "missing: no such folder" in skipped
    assert f"optuna-dashboard sqlite:///{runs / 'grid' / 'study.db'}" in page

    out = capsys.readouterr().out
    assert all(n in out for n in names) and "3 runs by eval_loss (smaller is better)" in out and "Traceback" not in out


def test_tensorboard_gets_curves_and_hparams(runs: Path, tmp_path: Path) -> None:
    comp = compare.load([runs / "grid", runs / "full"])
    compare.write_tensorboard(comp, tmp_path / "tb")
    top = EventAccumulator(str(tmp_path / "tb"))
    top.Reload()
    assert list(top.PluginTagToContent("hparams")) == ["_hparams_/experiment"]  # the HParams columns, once
    for name in ("grid/trial-0", "grid/trial-1", "full"):
        acc = EventAccumulator(str(tmp_path / "tb" / name))
        acc.Reload()
        assert {"train/loss", "eval/eval_loss", "eval/eval_accuracy"} <= set(acc.Tags()["scalars"])
        assert not {"train/time", "train/step", "eval/batches"} & set(acc.Tags()["scalars"])
        assert [e.step for e in acc.Scalars("eval/eval_loss")] == [2, 4]
        sessions = acc.PluginTagToContent("hparams")
        assert set(sessions) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
        start = sessions["_hparams_/session_start_info"]
        assert (b"LoRA r=" if "grid" in name else b"full") in start


def test_nothing_to_compare_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["compare", str(tmp_path / "nope"), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no finished runs to compare" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "report.html").exists()


def _trial(trial_id: int, hparams: dict, state: str) -> client.Trial:
    raw = bindings.trialv1Trial(experimentId=7, hparams=hparams, id=trial_id, restarts=0,
                                startTime="2026-01-01T00:00:00Z", state=bindings.trialv1State[state],
                                totalBatchesProcessed=0)
    return client.Trial._from_bindings(raw, session=None)


def _metrics(trial_id: int, group: str, points: dict[int, dict]) -> list[client.TrialMetrics]:
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return [client.TrialMetrics(trial_id=trial_id, trial_run_id=1, steps_completed=step, group=group, metrics=m,
                                end_time=t0 + datetime.timedelta(seconds=10 * step)) for step, m in points.items()]


def test_cluster_trials_convert_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial / TrialMetrics / Experiment are the SDK's own; only the master's answers are stood in."""
    hp = {"lora": {"r": 16, "lora_alpha": 32}, "training_args": {"max_steps": 1600, "learning_rate": 1e-4}}
    finished = _trial(11, hp, "COMPLETED")
    stopped = _trial(12, {**hp, "lora": {"r": 4, "lora_alpha": 8}}, "COMPLETED")
    assert finished.hparams == hp and finished.state == client.TrialState.COMPLETED
    training = {11: _metrics(11, "training", {100: {"loss": 2.0}, 1600: {"loss": 1.0}}),
                12: _metrics(12, "training", {100: {"loss": 2.5}})}
    validation = {11: _metrics(11, "validation", {100: {"eval_accuracy": 0.5, "batches": 100},
                                                  1600: {"eval_accuracy": 0.8, "eval_execution_accuracy_easy": 0.6}}),
                  12: _metrics(12, "validation", {100: {"eval_accuracy": 0.3, "batches": 100}})}

    run = study_runs.run_from_trial(7, finished, training[11], validation[11])
    assert run.name == "exp-7/trial-11" and run.state == "completed" and run.method == "LoRA r=16 α=32"
    assert run.final == {"eval_accuracy": 0.8, "eval_execution_accuracy_easy": 0.6}
    assert run.curves["training"] == {100: {"loss": 2.0}, 1600: {"loss": 1.0}}
    assert run.summary["wall_time_s"] == 15000 and run.summary["trainable_parameters"] is None
    assert study_runs.run_from_trial(7, stopped, training[12], validation[12]).state == "stopped at 100/1600"

    experiment = client.Experiment(7, session=None)
    experiment.config = {"searcher": {"name": "adaptive_asha", "metric": "eval_accuracy", "smaller_is_better": False},
                         "hyperparameters": {"lora": {"type": "categorical", "vals": [{"r": 4}, {"r": 16}]}}}
    monkeypatch.setattr(client.Experiment, "list_trials", lambda self: [finished, stopped])
    monkeypatch.setattr(client.Trial, "iter_metrics", lambda self, group: {"training": training,
                                                                           "validation": validation}[group][self.id])
    monkeypatch.setattr(client, "get_experiment", lambda eid: experiment)
    assert cli.main(["compare", "--experiment", "7", "--output", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Ranked by <b>eval_accuracy</b> (last evaluation; larger is better)" in page
    assert page.index("exp-7/trial-11") < page.index("exp-7/trial-12") and "stopped at 100/1600" in page
    assert 'id="per_difficulty"' in page and 'id="metric_vs_r"' in page


def test_one_run_is_ranked_by_its_own_yamls_searcher_metric(runs: Path, tmp_path: Path) -> None:
    summary = json.loads((runs / "full" / "summary.json").read_text())
    assert summary["searcher"] == {"name": "single", "metric": "eval_loss", "smaller_is_better": True}
    copy = tmp_path / "full"
    shutil.copytree(runs / "full", copy)
    summary["searcher"] = {"name": "single", "metric": "eval_valid_sql", "smaller_is_better": False}
    (copy / "summary.json").write_text(json.dumps(summary))
    comp = compare.load([copy])
    assert (comp.metric, comp.smaller_is_better) == ("eval_valid_sql", False)


def test_ties_on_the_metric_are_broken_by_eval_loss(runs: Path) -> None:
    comp = compare.load([runs / "grid"], metric="eval_fuzz_execution_accuracy")
    scores = [r.final["eval_fuzz_execution_accuracy"] for r in comp.runs]
    assert len(set(scores)) == 1  # a random model: every trial scores the same
    losses = [r.final["eval_loss"] for r in comp.runs]
    assert losses == sorted(losses) and losses[0] != losses[-1]
