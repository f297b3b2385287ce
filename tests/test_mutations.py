"""Every shipped YAML, every hyperparameter leaf, mutated: a wrong type, an out-of-range value where
the field has a range, a missing required value and an unknown sibling key. Each must end in exit 2
with the field's dotted name and no traceback, before anything loads (issue 12)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from test_configs import ALL, ROOT, _raw, run_cli, search_overrides, tripwire  # noqa: F401
from sqltune import config, training_args

WRONG_TYPE = {bool: "maybe", int: "many", float: "lots", str: "[1, 2]", list: "{a: 1}", type(None): "[1, 2]"}
# leaves whose value is free text or any number: no type but str (or int) is wrong for them
NO_RANGE = {"model.seed", "data.split_seed", "data.synthetic_seed"}


def leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, path + ".")
        else:
            yield path, value


def cases() -> Iterator[tuple[str, str, Any]]:
    for rel in ALL:
        exp = config.load(ROOT / rel, search_overrides(_raw(rel)["hyperparameters"]))
        for path, value in leaves(exp.resolved):
            yield rel, path, value


CASES = list(cases())


def _ranged(path: str, value: Any) -> bool:
    """Numeric fields with a bound: ours (pydantic constraints), the architecture's sizes, and the
    TrainingArguments numbers we know a range for (max_steps -1 and seeds are valid)."""
    if path in NO_RANGE or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if path.startswith("training_args."):
        key = path.split(".", 1)[1]
        return key in training_args.POSITIVE | training_args.NON_NEGATIVE
    return True


def test_cases_cover_every_yaml() -> None:
    assert {rel for rel, _, _ in CASES} == set(ALL) and len(CASES) > 300


@pytest.mark.parametrize(("rel", "path", "value"), CASES, ids=[f"{r}:{p}" for r, p, _ in CASES])
def test_every_leaf_mutated_is_refused_by_name(rel: str, path: str, value: Any, tmp_path: Path, capsys,
                                               tripwire: None, monkeypatch) -> None:  # noqa: F811
    monkeypatch.chdir(ROOT)
    base = [arg for o in search_overrides(_raw(rel)["hyperparameters"]) for arg in ("--set", o)]
    config_path = str(ROOT / rel)
    parent = path.rsplit(".", 1)[0] if "." in path else ""

    mutations = [(f"{path}={WRONG_TYPE.get(type(value), '[1, 2]')}", path)]
    if _ranged(path, value):
        mutations.append((f"{path}=-1", path))
    sibling = f"{parent}.no_such_key" if parent else "no_such_key"
    mutations.append((f"{sibling}=1", sibling))
    for override, named in mutations:
        err = run_cli(capsys, config_path, *base, "--set", override)
        assert f"hyperparameters.{named}" in err, (override, err)

    if path == "training_args.output_dir":  # the one required leaf
        raw = copy.deepcopy(_raw(rel))
        del raw["hyperparameters"]["training_args"]["output_dir"]
        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump(raw))
        err = run_cli(capsys, str(broken), *base)
        assert "hyperparameters.training_args.output_dir: required field is missing" in err
