"""The checks that look outside the config: files and folders it names, installed packages, and
transformers' config classes. Run once by `build`, after the blocks validate and before anything
loads, so a missing folder or package ends in one line in a second, not after a model load."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from sqltune.config.data import source_specs
from sqltune.config.hyperparameters import Hyperparameters


def problems(hp: Hyperparameters) -> list[str]:
    out = _data_problems(hp)
    if hp.quantization is not None and importlib.util.find_spec("bitsandbytes") is None:
        out.append("hyperparameters.quantization: needs the bitsandbytes package: pip install bitsandbytes")
    m = hp.model
    for field in ("name", "tokenizer"):
        if (why := local_model_problem(getattr(m, field))) is not None:
            out.append(f"hyperparameters.model.{field}: {why}")
    if m.from_config is not None and "model_type" in m.from_config:
        out.extend(_from_config_problems(m.from_config))
    return out


def _data_problems(hp: Hyperparameters) -> list[str]:
    data, out = hp.data, []
    for i, spec in enumerate(source_specs(data)):
        field = "hyperparameters.data.source" + (f"[{i}]" if isinstance(data.source, list) else "")
        kind, _, folder = spec.source.partition(":")
        if kind in ("spider", "bird") and folder and not Path(folder).expanduser().is_dir():
            out.append(f"{field}: no such folder '{folder}' (a {kind} benchmark folder, as downloaded)")
        if kind == "text2sql-data" and folder and not Path(folder).expanduser().is_file():
            out.append(f"{field}: no such file '{folder}' (one dataset's JSON file in text2sql-data's data/ folder, "
                       "e.g. text2sql-data:text2sql-data/data/restaurants.json)")
    return out


def looks_local(name: str) -> bool:
    """A path, not a hub id: hub ids are `name` or `org/name`, never starting with / . or ~."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith(".gguf") or os.path.exists(name)


def local_model_problem(name: str | None) -> str | None:
    """Why a local model path can't be loaded, said before anything loads; None if fine or a hub id."""
    if not name or not looks_local(name):
        return None
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        return None if path.is_file() else f"no such GGUF file '{name}'"
    if not path.exists():
        return f"no such folder '{name}' (a local path: check it; a hub model is named like 'org/name')"
    if not path.is_dir() or not ((path / "config.json").is_file() or (path / "tokenizer_config.json").is_file()):
        return f"'{name}' is not a model folder (no config.json or tokenizer_config.json in it)"
    return None


def _from_config_problems(spec: dict[str, Any]) -> list[str]:
    """`model.from_config` against the architecture's own config class: known model type, known
    keys, values of the default's type (sizes positive). transformers would take anything."""
    import transformers  # only a from_config model pays for it here (config errors stay light)

    where = "hyperparameters.model.from_config"
    kind = spec["model_type"]
    if not isinstance(kind, str) or kind not in transformers.CONFIG_MAPPING:
        return [f"{where}.model_type: unknown model type {kind!r} (e.g. llama, mistral, qwen2)"]
    default = transformers.CONFIG_MAPPING[kind]()
    out = []
    for key, value in spec.items():
        if key == "model_type":
            continue
        if not hasattr(default, key):
            out.append(f"{where}.{key}: not a field of {type(default).__name__}")
            continue
        want = getattr(default, key)
        if isinstance(want, bool) or want is None or not isinstance(want, (int, float, str)):
            continue
        if isinstance(want, int) and (not isinstance(value, int) or isinstance(value, bool)):
            out.append(f"{where}.{key}: input should be a valid integer (got {value!r})")
        elif isinstance(want, float) and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            out.append(f"{where}.{key}: input should be a valid number (got {value!r})")
        elif isinstance(want, str) and not isinstance(value, str):
            out.append(f"{where}.{key}: input should be a valid string (got {value!r})")
        elif isinstance(want, int) and want > 0 and value <= 0:
            out.append(f"{where}.{key}: input should be greater than 0 (got {value!r})")
    return out
