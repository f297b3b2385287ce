"""One experiment YAML -> typed hyperparameters.

The YAML is a Determined experiment config (`det e create lora.yaml .` takes it as is). Its
`hyperparameters:` block is what the trial reads: on a cluster Determined hands it to the trial
already resolved; on one machine we resolve it here, where a `{type: const, val: x}` becomes `x`
and a search space (`int`, `double`, `log`, `categorical`) is refused unless `--set` picks a value
(`sqltune search` picks them for you).

Override order, as in nanoGPT's configurator: the YAML, then each `--set a.b=c` (values parsed as
YAML scalars). Every problem is collected and reported together in one `ConfigError` that names
the field, before any model or data loads: the blocks' own rules (pydantic), then, once those hold,
the pre-flight (preflight.py: files, packages, transformers). `training_args` is passed to
`transformers.TrainingArguments` untouched; we only check that the keys exist there.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sqltune import training_args
from sqltune.config import preflight
from sqltune.config.base import CROSS_FIELD
from sqltune.config.hyperparameters import Hyperparameters
from sqltune.errors import ConfigError

SEARCH_TYPES = ("int", "double", "log", "categorical")


@dataclasses.dataclass
class Experiment:
    """A loaded experiment: the raw Determined config and our typed view of its hyperparameters."""

    path: Path | None
    raw: dict[str, Any]
    hparams: Hyperparameters
    resolved: dict[str, Any]  # hyperparameters as plain values, written beside every checkpoint


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError([f"no such config file '{path}'"])
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], str(path)) from None
    if raw is None:
        raise ConfigError(["the file is empty: an experiment config needs at least a hyperparameters: mapping "
                           "(see experiments/local.yaml)"], str(path))
    if not isinstance(raw, dict):
        raise ConfigError(["expected a mapping at the top level"], str(path))
    return raw


def _unflatten(hp: dict[str, Any]) -> dict[str, Any]:
    """`{"lora.r": 8}` -> `{"lora": {"r": 8}}`, so search spaces may be written flat."""
    out: dict[str, Any] = {}
    for key, value in hp.items():
        node = out
        *parents, leaf = str(key).split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _unflatten(value) if isinstance(value, dict) and "type" not in value else value
    return out


def resolve(hp: Any, prefix: str, problems: list[str]) -> Any:
    """Replace Determined hyperparameter specs by values; report search spaces left open."""
    if isinstance(hp, dict) and isinstance(hp.get("type"), str):
        kind = hp["type"]
        if kind == "const":
            return hp.get("val")
        if kind in SEARCH_TYPES:
            problems.append(
                f"hyperparameters.{prefix} is a search space ({kind}); pick a value with --set {prefix}=VALUE "
                f"or run `sqltune search`"
            )
            return None
    if isinstance(hp, dict):
        return {k: resolve(v, f"{prefix}.{k}" if prefix else str(k), problems) for k, v in hp.items()}
    return hp


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError([f"--set expects KEY=VALUE, got '{item}'"])
        out.append((key.removeprefix("hyperparameters."), yaml.safe_load(text) if text else ""))
    return out


def _normalise_shorthands(hp: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The reference's flat names (`model: name`, `lora: true`, `dataset_subset`) stay valid."""
    hp = dict(hp)
    if isinstance(hp.get("model"), str):
        hp["model"] = {"name": hp["model"]}
    if isinstance(hp.get("lora"), bool):
        hp["lora"] = {"enabled": hp["lora"]}
    elif isinstance(hp.get("lora"), dict):
        hp["lora"] = {"enabled": True, **hp["lora"]}
        if hp["lora"]["enabled"] is False and len(hp["lora"]) > 1:
            extra = ", ".join(f"hyperparameters.lora.{k}" for k in hp["lora"] if k != "enabled")
            problems.append(f"{extra} set but hyperparameters.lora.enabled is false (full fine-tune): remove them or enable LoRA")
    if "dataset_subset" in hp:
        hp.setdefault("data", {})
        hp["data"] = {**hp["data"], "subset": hp.pop("dataset_subset")}
    return hp


_UNION_TAG = re.compile(r"(str|int|float|bool|list\[.*\]|dict\[.*\]|literal\[.*\]|[A-Z]\w*)")  # pydantic's union branch names


def pydantic_problems(err: ValidationError) -> list[str]:
    """One line per problem, at the field's path. A union (data.source: text or a list) reports a
    failure per branch, tagged with the branch's type: the tags go, and a branch's failure at a
    field that another branch's error lies under (a list item's weight) is the one kept."""
    errors = [(tuple(str(p) for p in e["loc"] if not _UNION_TAG.fullmatch(str(p))), e) for e in err.errors()]
    errors = [(loc, e) for loc, e in errors if not any(o[:len(loc)] == loc and len(o) > len(loc) for o, _ in errors)]
    out = []
    for loc, e in errors:
        where = "hyperparameters." + ".".join(loc)
        if e["type"] == CROSS_FIELD:  # a rule over several fields (base.check): its lines name them
            out.extend(e["ctx"]["lines"])
        elif e["type"] == "extra_forbidden":
            out.append(f"{where}: unknown field")
        elif e["type"] == "missing":
            out.append(f"{where}: required field is missing")
        else:
            out.append(f"{where}: {e['msg'][0].lower()}{e['msg'][1:]} (got {e.get('input')!r})")
    return out


def build(raw: dict[str, Any], overrides: list[str] = (), path: Path | None = None) -> Experiment:
    """Validate `raw` (a whole experiment config) after applying `--set` overrides."""
    problems: list[str] = []
    raw = copy.deepcopy(raw)
    hp = raw.get("hyperparameters")
    if not isinstance(hp, dict):
        raise ConfigError(["hyperparameters: required mapping is missing"], str(path or "config"))
    hp = _unflatten(hp)
    for key, value in parse_overrides(list(overrides)):
        if key.startswith("searcher."):  # a local run's searcher (on a cluster the master holds it)
            raw["searcher"] = raw.get("searcher") if isinstance(raw.get("searcher"), dict) else {}
            set_path(raw["searcher"], key.removeprefix("searcher."), value)
        else:
            set_path(hp, key, value)
    hp = resolve(hp, "", problems)
    hp = _normalise_shorthands(hp, problems)
    targs = hp.get("training_args")
    if not isinstance(targs, dict):
        problems.append("hyperparameters.training_args: required mapping is missing")
    else:
        problems.extend(training_args.problems(targs, path.parent if path else None, grpo=isinstance(hp.get("grpo"), dict)))
    hparams = None
    try:
        hparams = Hyperparameters.model_validate(hp)
    except ValidationError as e:
        open_spaces = {p.split(" ")[0] for p in problems if "is a search space" in p}
        problems.extend(p for p in pydantic_problems(e) if p.split(":")[0] not in open_spaces)
    if hparams is not None:
        problems.extend(preflight.problems(hparams))
    if problems:
        raise ConfigError(problems, str(path or "config"))
    # The copy beside every checkpoint names its prompt layout even when the YAML left it out: the
    # default changed (reference -> schema_first), and a copy without it was trained on the reference's.
    hp.setdefault("format", {}).setdefault("layout", hparams.format.layout)
    return Experiment(path=path, raw=raw, hparams=hparams, resolved=hp)


def load(path: str | os.PathLike, overrides: list[str] = ()) -> Experiment:
    path = Path(path)
    return build(read_yaml(path), overrides, path)
