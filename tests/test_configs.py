"""Every shipped experiment YAML, and the configs we refuse.

Shipped YAMLs are found recursively and counted, so a new one is added here knowingly. Each passes
the Determined 0.38.1 schema check a master runs (`validate.py --complete`), loads with our own
loader, and agrees with what the trial reports (searcher metric, evaluation, launcher). Search
configs (names with grid / random / asha / search) are counted apart; they load with `--set`
values picked from their search spaces.

Broken configs go through the real entry point, `sqltune.cli.main(["train", path])`: exit code 2,
one message naming the field, no traceback, and nothing loaded (training is replaced by a tripwire).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

import text2sql_fixture
from conftest import tiny_config, write_config
from sqltune import cli, config, core_api
from sqltune.sql.scoring import SQL_METRICS
from sqltune.study.space import search_space, yaml_text

ROOT = Path(__file__).parents[1]
VALIDATE = ROOT / ".." / "shared" / "determined-expconf" / "validate.py"
SEARCH_NAME = re.compile(r"grid|random|asha|search")

EXPECTED = {  # every non-search experiment YAML we ship
    "lora.yaml",
    "deepspeed.yaml",
    "experiments/local.yaml",
    "experiments/local-grpo.yaml",
    "experiments/tiny-cpu.yaml",
    "experiments/tinyllama/grpo-easy.yaml",
    "experiments/mistral-qlora.yaml",
    "experiments/real-questions.yaml",
    *(f"experiments/tinyllama/{kind}-{subset}.yaml" for kind in ("lora", "full") for subset in ("easy", "medium", "hard")),
}


def _shipped() -> list[str]:
    found = [p for pattern in ("*.yaml", "*.yml", "experiments/**/*.yaml", "experiments/**/*.yml")
             for p in ROOT.glob(pattern)]
    return sorted(str(p.relative_to(ROOT)) for p in found)


ALL = _shipped()
SEARCHES = [p for p in ALL if SEARCH_NAME.search(Path(p).name)]
PLAIN = [p for p in ALL if p not in SEARCHES]
CLUSTER = [p for p in PLAIN if "determined.launch" in str(yaml.safe_load((ROOT / p).read_text()).get("entrypoint"))]


def _raw(rel: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / rel).read_text())


# A shipped recipe on a text2sql-data set names the set where a user's copy of that repository is
# (not in this one): the tests point it at the same format's fixture (tests/text2sql_fixture.py).
T2S_FIXTURE = text2sql_fixture.write(Path(tempfile.mkdtemp(prefix="sqltune-text2sql-data-")))


def search_overrides(hp: dict[str, Any]) -> list[str]:
    """`--set key=value` picking a value for every search space (nested or dotted keys), and a
    text2sql-data source the repository lacks pointed at the fixture."""
    out = [f"{p.name}={yaml_text(p.first())}" for p in search_space(hp)]
    source = (hp.get("data") or {}).get("source")
    if isinstance(source, str) and source.startswith("text2sql-data:") and not (ROOT / source.partition(":")[2]).exists():
        out.append(f"data.source=text2sql-data:{T2S_FIXTURE / 'minirest.json'}")
    return out


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths in the YAMLs (ds_configs/...) are relative to the repo root, the context."""
    monkeypatch.chdir(ROOT)


def load(rel: str) -> config.Experiment:
    return config.load(ROOT / rel, search_overrides(_raw(rel)["hyperparameters"]))


# ---- shipped YAMLs ------------------------------------------------------------------------------


def test_every_shipped_yaml_is_known() -> None:
    assert set(PLAIN) == EXPECTED, "a YAML was added or removed: update EXPECTED knowingly"
    assert len(PLAIN) == 14


@pytest.mark.parametrize("rel", ALL)
def test_master_would_accept(rel: str) -> None:
    if not VALIDATE.is_file():
        pytest.skip(f"{VALIDATE.resolve()} is absent (it comes with the shared expconf schemas, not with the repo)")
    done = subprocess.run([sys.executable, str(VALIDATE), str(ROOT / rel), "--complete"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rel", ALL)
def test_loads_and_agrees_with_the_trial(rel: str, at_root: None) -> None:
    exp = load(rel)
    raw, targs = exp.raw, exp.hparams.training_args
    searcher = raw["searcher"]
    reported = {"eval_loss", "eval_accuracy"} if exp.hparams.grpo is None else set()  # GRPO: generated SQL only
    if exp.hparams.eval.generate_samples:
        reported |= {f"eval_{m}" for m in SQL_METRICS}
    assert searcher["metric"] in reported, f"the trial never reports {searcher['metric']}"
    assert searcher.get("smaller_is_better", True) == (searcher["metric"] == "eval_loss")
    assert targs.get("eval_strategy", "no") != "no", "no evaluation: the searcher would get no metric"
    core_api.check_searcher(searcher, SimpleNamespace(max_steps=targs["max_steps"]))  # max_length, max_time


@pytest.mark.parametrize("rel", CLUSTER)
def test_cluster_configs_resume_and_rank_checkpoints(rel: str, at_root: None) -> None:
    raw, targs = _raw(rel), load(rel).hparams.training_args
    assert raw["max_restarts"] > 0, "a preempted or failed trial should resume from its checkpoint"
    assert ("determined.launch.deepspeed" in raw["entrypoint"]) == bool(targs.get("deepspeed"))
    assert targs["save_steps"] % targs["eval_steps"] == 0, "a checkpoint without a validation can't be ranked"
    assert targs["max_steps"] % targs["eval_steps"] == 0, "the final checkpoint would have no validation"
    assert targs["report_to"] == "tensorboard"
    assert "max_length" not in raw["searcher"]


def test_search_configs_need_a_value_for_every_space(at_root: None) -> None:
    for rel in SEARCHES:
        with pytest.raises(config.ConfigError, match="is a search space"):
            config.load(ROOT / rel)


def test_context_upload_is_small_and_complete() -> None:
    from determined.common import detignore

    files = {f.path: f for f in detignore.os_walk_to_v1Files(ROOT, Path(""))}
    size = sum(len(f.content or "") for f in files.values())
    assert size < 2 * 2**20, f"the det e create context is {size / 2**20:.1f} MB: check .detignore"
    needed = {"startup-hook.sh", "pyproject.toml", "requirements.txt", "src/sqltune/cli.py",
              "ds_configs/ds_config_stage_3.json", *EXPECTED}
    assert needed <= set(files), needed - set(files)
    assert not any(p.split("/")[0] in (".venv", "runs", "tests", ".git") for p in files)


def test_startup_hook_finds_this_venv_complete() -> None:
    """The hook's check against requirements.txt, in the venv install.sh built: nothing to install."""
    env = {**os.environ, "SQLTUNE_HOOK_CHECK": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "startup-hook.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to do" in done.stdout


# ---- broken configs, through the CLI ------------------------------------------------------------


def _nested(hp: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        hp = hp.setdefault(p, {})
    if value is _DELETE:
        hp.pop(leaf)
    else:
        hp[leaf] = value


_DELETE = object()

BROKEN = {  # id: ({hyperparameter: value}, text the error must hold)
    "unknown-hyperparameter": ({"optimizer": {"name": "adamw"}}, "hyperparameters.optimizer: unknown field"),
    "unknown-lora-field": ({"lora.rank": 8}, "hyperparameters.lora.rank: unknown field"),
    "mistyped-value": ({"data.max_rows": "many"}, "hyperparameters.data.max_rows: input should be a valid integer"),
    "lora-r-zero": ({"lora.r": 0}, "hyperparameters.lora.r: input should be greater than 0 (got 0)"),
    "dropout-one": ({"lora.lora_dropout": 1.0}, "hyperparameters.lora.lora_dropout: input should be less than 1"),
    "missing-deepspeed-file": ({"training_args.deepspeed": "ds_configs/nope.json"},
                               "hyperparameters.training_args.deepspeed: no such file 'ds_configs/nope.json'"),
    "lora-fields-with-lora-off": ({"lora.enabled": False}, "hyperparameters.lora.r, hyperparameters.lora.lora_alpha, hyperparameters.lora.lora_dropout set but hyperparameters.lora.enabled is false"),
    "v4-training-arg": ({"training_args.evaluation_strategy": "steps"},
                        "hyperparameters.training_args.evaluation_strategy: not a transformers.TrainingArguments field"),
    "missing-output-dir": ({"training_args.output_dir": _DELETE}, "hyperparameters.training_args.output_dir: required field is missing"),
    "bad-subset": ({"data.subset": "extreme"}, "hyperparameters.data.subset: input should be 'easy', 'medium', 'hard' or 'all'"),
    "from-config-without-model-type": ({"model.from_config.model_type": _DELETE},
                                       "hyperparameters.model.from_config.model_type: required field is missing"),
    "name-and-from-config": ({"model.name": "smollm2"}, "hyperparameters.model: set name or from_config, not both"),
    "learning-rate-as-text": ({"training_args.learning_rate": "1e-5"},
                              "hyperparameters.training_args.learning_rate: input should be a valid number (got '1e-5'); YAML 1.1"),
    "max-steps-as-text": ({"training_args.max_steps": "100"}, "hyperparameters.training_args.max_steps: input should be a valid integer"),
    "bool-as-number": ({"training_args.use_cpu": 1}, "hyperparameters.training_args.use_cpu: input should be a valid boolean"),
    "bf16-and-fp16": ({"training_args.bf16": True, "training_args.fp16": True},
                      "hyperparameters.training_args.fp16: can't be true together with bf16"),
    "search-space-without-set": ({"lora.r": {"type": "int", "minval": 4, "maxval": 16}},
                                 "hyperparameters.lora.r is a search space (int); pick a value with --set lora.r=VALUE"),
    "unknown-hyperparameter-spec": ({"lora.r": {"type": "integer", "minval": 4}}, "hyperparameters.lora.r"),
    "generation-longer-than-context": ({"eval.generate_samples": 4, "eval.max_new_tokens": 512},
                                       "hyperparameters.eval.max_new_tokens must be smaller than format.max_length"),
}


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training (and so any data or model load) must never start for a broken config."""
    from sqltune import recipes

    def run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("recipes.run reached: the config error came too late")

    monkeypatch.setattr(recipes, "run", run)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main(["train", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("sqltune: error: "), err
    return err


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_config_is_refused_by_name(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          tripwire: None) -> None:
    changes, expected = BROKEN[case]
    cfg = tiny_config(tmp_path)
    for key, value in changes.items():
        _nested(cfg["hyperparameters"], key, value)
    err = run_cli(capsys, str(write_config(tmp_path, cfg)))
    assert expected in err, err


def test_every_problem_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"]["lora"]["r"] = 0
    cfg["hyperparameters"]["training_args"]["evaluation_strategy"] = "steps"
    cfg["hyperparameters"]["data"]["subset"] = "extreme"
    err = run_cli(capsys, str(write_config(tmp_path, cfg)))
    assert "3 problem(s)" in err
    for field in ("lora.r", "training_args.evaluation_strategy", "data.subset"):
        assert f"hyperparameters.{field}" in err


def test_deepspeed_file_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    bad = tmp_path / "ds.json"
    bad.write_text('{"zero_optimization": {"stage": 3,}}')
    cfg = tiny_config(tmp_path, training_args={"deepspeed": str(bad)})
    err = run_cli(capsys, str(write_config(tmp_path, cfg)))
    assert f"hyperparameters.training_args.deepspeed: '{bad}' is not valid JSON" in err


@pytest.mark.parametrize(("text", "expected"), [
    ("- a list\n- not a mapping\n", "expected a mapping at the top level"),
    ("name: x\nhyperparameters: [1, 2\n", "not valid YAML"),
    ("name: no-hyperparameters\nentrypoint: python -m sqltune train\n", "hyperparameters: required mapping is missing"),
])
def test_not_an_experiment_file(text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                tripwire: None) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    err = run_cli(capsys, str(path))
    assert expected in err and str(path) in err, err


def test_no_such_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    assert "no such config file" in run_cli(capsys, str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(("override", "expected"), [
    ("lora.r", "--set expects KEY=VALUE, got 'lora.r'"),
    ("=8", "--set expects KEY=VALUE, got '=8'"),
    ("lora.rank=8", "hyperparameters.lora.rank: unknown field"),
    ("training_args.learning_rate=1e-4", "hyperparameters.training_args.learning_rate: input should be a valid number"),
])
def test_bad_set(override: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    path = write_config(tmp_path, tiny_config(tmp_path))
    assert expected in run_cli(capsys, str(path), "--set", override)


def test_set_picks_a_search_space_value(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, lora={"r": {"type": "categorical", "vals": [4, 8]}},
                      training_args={"learning_rate": {"type": "log", "base": 10, "minval": -5, "maxval": -3}})
    overrides = search_overrides(cfg["hyperparameters"])
    assert overrides == ["lora.r=4", "training_args.learning_rate=1.0e-05"]
    exp = config.load(write_config(tmp_path, cfg), overrides)
    assert exp.hparams.lora.r == 4 and exp.hparams.training_args["learning_rate"] == pytest.approx(1e-5)
    # plain values that survive the YAML written beside every checkpoint
    assert yaml.safe_load(yaml.safe_dump(exp.resolved)) == exp.resolved
    assert exp.resolved["lora"]["r"] == 4


# ---- the mistakes users make (issue 12): one line, naming the field, exit 2 ---------------------------


@pytest.mark.parametrize(("changes", "expected"), [
    ({"model": {"name": "/nonexistent/model-dir"}},
     "hyperparameters.model.name: no such folder '/nonexistent/model-dir' (a local path"),
    ({"model": {"name": "./models/typo.gguf"}}, "hyperparameters.model.name: no such GGUF file './models/typo.gguf'"),
    ({"model": {"from_config": {"model_type": "llama"}, "tokenizer": "~/no/such/tokenizer"}},
     "hyperparameters.model.tokenizer: no such folder '~/no/such/tokenizer'"),
    ({"training_args": {"save_strategy": True}},
     'hyperparameters.training_args.save_strategy: expected one of no, steps, epoch, best (got True); '
     'YAML reads bare yes/no/on/off as booleans: quote the word, e.g. save_strategy: "no"'),
])
def test_user_mistake_is_one_line(changes: dict, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  tripwire: None) -> None:
    cfg = tiny_config(tmp_path)
    for key, value in changes.items():
        cfg["hyperparameters"][key] = value if key == "model" else {**cfg["hyperparameters"][key], **value}
    err = run_cli(capsys, str(write_config(tmp_path, cfg)))
    assert expected in err and err.count("\n") == 1, err


def test_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"]["model"] = {"name": str(tmp_path)}
    err = run_cli(capsys, str(write_config(tmp_path, cfg)))
    assert f"hyperparameters.model.name: '{tmp_path}' is not a model folder" in err


def test_yaml_no_is_read_as_the_strategy_no(tmp_path: Path) -> None:
    """`eval_strategy: no` (or --set ...=no) reaches us as False: it means "no"."""
    path = tmp_path / "exp.yaml"
    text = yaml.safe_dump(tiny_config(tmp_path), sort_keys=False).replace("eval_strategy: steps", "eval_strategy: no")
    path.write_text(text)
    assert "eval_strategy: no\n" in text
    exp = config.load(path)
    assert exp.hparams.training_args["eval_strategy"] == "no"
    exp = config.load(write_config(tmp_path, tiny_config(tmp_path), "b.yaml"), ["training_args.save_strategy=no"])
    assert exp.hparams.training_args["save_strategy"] == "no"


def test_empty_file_says_it_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str], tripwire: None) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("# nothing yet\n")
    err = run_cli(capsys, str(path))
    assert f"{path}: the file is empty" in err and err.count("\n") == 1, err
