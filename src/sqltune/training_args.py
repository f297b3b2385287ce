"""The `training_args:` block, checked against `transformers.TrainingArguments` (a GRPO run:
`trl.GRPOConfig`) before anything loads.

transformers stores whatever it is given (`learning_rate: "1e-5"` fails only at the first
optimizer step), so the names, scalar types, enum values and a few ranges are checked here.

Without importing transformers: that import takes ~5 s (it pulls torch), and a config error
should come in about a second. The field types are read from `training_args_fields.json`, a
snapshot of `dataclasses.fields(TrainingArguments)` made for the pinned transformers version
(`python -m sqltune.training_args` rewrites it; a test checks that it matches the installed
version). With any other transformers version installed, the fields are read from it directly.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.metadata
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

SNAPSHOT = Path(__file__).with_name("training_args_fields.json")


# A GRPO run's `training_args` go to trl.GRPOConfig, a TrainingArguments with fields of its own
# (loss_type, epsilon, num_iterations, scale_rewards, log_completions, ...); these few come from
# our `grpo:` block instead (grpo.trl_args), so one value has one place.
GRPO_BLOCK = {"num_generations": "num_generations", "max_completion_length": "max_completion_length",
              "temperature": "temperature", "beta": "beta", "reward_weights": "rewards",
              "num_generations_eval": None}


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("transformers", "trl")}


@functools.cache
def fields(grpo: bool = False) -> dict[str, Any]:
    """The field types by name of TrainingArguments (or, for a GRPO run, trl.GRPOConfig), from the
    snapshot when it matches the installed transformers and trl."""
    try:
        snapshot = json.loads(SNAPSHOT.read_text())
        if {k: snapshot[k] for k in ("transformers", "trl")} == _versions():
            specs = {**snapshot["fields"], **(snapshot["grpo_fields"] if grpo else {})}
            return {name: decode(spec) for name, spec in specs.items()}
    except (OSError, ValueError, KeyError, importlib.metadata.PackageNotFoundError):
        pass
    return live_fields(grpo)


def live_fields(grpo: bool = False) -> dict[str, Any]:
    import transformers

    found = {f.name: f.type for f in dataclasses.fields(transformers.TrainingArguments)}
    if grpo:
        import trl

        found.update({f.name: f.type for f in dataclasses.fields(trl.GRPOConfig) if f.name not in found})
    return found


def encode(annotation: Any) -> Any:
    """A field type as JSON: scalars and None by name, unions, lists, literals, enums (name and
    values); a type the checks can't use (a config class) by name only, taken on trust."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return {"union": [encode(a) for a in args]}
    if origin is Literal:
        return {"literal": list(args)}
    if origin is list or annotation is list:
        return {"list": encode(args[0]) if args else None}
    if origin is dict or annotation is dict:
        return "dict"
    if annotation is type(None):
        return "None"
    if annotation in (bool, int, float, str):
        return annotation.__name__
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": annotation.__name__, "values": [str(m.value) for m in annotation]}
    return {"other": getattr(annotation, "__name__", str(annotation))}


def decode(spec: Any) -> Any:
    """The inverse of `encode`, close enough for the checks below (enums rebuilt from their values)."""
    if isinstance(spec, str):
        return {"None": type(None), "dict": dict, "bool": bool, "int": int, "float": float, "str": str}[spec]
    if spec is None:
        return list
    if "union" in spec:
        return typing.Union[tuple(decode(a) for a in spec["union"])]
    if "literal" in spec:
        return Literal[tuple(spec["literal"])]
    if "list" in spec:
        return list if spec["list"] is None else list[decode(spec["list"])]
    if "enum" in spec:
        return enum.Enum(spec["enum"], {f"M{i}": v for i, v in enumerate(spec["values"])})
    return type(spec["other"], (), {})


def problems(targs: dict[str, Any], base: Path | None, grpo: bool = False) -> list[str]:
    """Every problem of a `training_args:` mapping (`base`: the YAML's folder, for a relative
    deepspeed path; `grpo`: the run is a GRPO stage, whose fields are trl.GRPOConfig's). A bare
    YAML `no` read as false is turned back into "no" in `targs`."""
    problems: list[str] = []
    known = fields(grpo)
    owner = "trl.GRPOConfig" if grpo else "transformers.TrainingArguments"
    for key, value in list(targs.items()):
        if grpo and key in GRPO_BLOCK:
            ours = GRPO_BLOCK[key]
            problems.append(f"hyperparameters.training_args.{key}: " + (
                f"set it as hyperparameters.grpo.{ours}" if ours else "sqltune's evaluation replaces TRL's; remove it"))
            continue
        choices = _enum_choices(known.get(key))
        if isinstance(value, bool) and choices:
            if value is False and "no" in choices:  # YAML 1.1 reads a bare `no` as false
                targs[key] = "no"
                continue
            problems.append(f"hyperparameters.training_args.{key}: expected one of {', '.join(choices)} (got {value!r}); "
                            f"YAML reads bare yes/no/on/off as booleans: quote the word, e.g. {key}: \"no\"")
            continue
        if key not in known:
            problems.append(f"hyperparameters.training_args.{key}: not a {owner} field")
        elif (why := _scalar_problem(value, known[key])) is not None:
            problems.append(f"hyperparameters.training_args.{key}: {why}")
        elif key in POSITIVE and isinstance(value, (int, float)) and value <= 0:
            problems.append(f"hyperparameters.training_args.{key}: input should be greater than 0 (got {value!r})")
        elif key in NON_NEGATIVE and isinstance(value, (int, float)) and value < 0:
            problems.append(f"hyperparameters.training_args.{key}: input should be 0 or more (got {value!r})")
    if "output_dir" not in targs:
        problems.append("hyperparameters.training_args.output_dir: required field is missing")
    if targs.get("bf16") is True and targs.get("fp16") is True:
        problems.append("hyperparameters.training_args.fp16: can't be true together with bf16; pick one mixed precision")
    ds = targs.get("deepspeed")
    if isinstance(ds, str):
        p = Path(ds)
        if not p.is_absolute() and not p.exists() and base is not None:
            p = base / ds
        if not p.is_file():
            problems.append(f"hyperparameters.training_args.deepspeed: no such file '{ds}'")
        else:
            try:
                json.loads(p.read_text())
            except json.JSONDecodeError as e:
                problems.append(f"hyperparameters.training_args.deepspeed: '{ds}' is not valid JSON ({e.msg} at line {e.lineno})")
    elif ds is not None and not isinstance(ds, dict):
        problems.append(f"hyperparameters.training_args.deepspeed: expected a JSON file path or a mapping (got {ds!r})")

    return problems

def _enum_choices(annotation: Any) -> list[str]:
    """The values of the Enum in a TrainingArguments field typed `SomeEnum | str`, else []."""
    for t in typing.get_args(annotation) or (annotation,):
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return [str(m.value) for m in t]
    return []


_SCALARS = {bool: "a valid boolean", int: "a valid integer", float: "a valid number"}
# TrainingArguments numbers with a range that transformers only finds out mid-training (or never)
POSITIVE = {
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "logging_steps", "eval_steps", "save_steps", "adam_epsilon",
}
NON_NEGATIVE = {  # learning_rate 0 is a control run: the searches use it
    "learning_rate", "warmup_steps", "warmup_ratio", "weight_decay", "max_grad_norm", "dataloader_num_workers", "save_total_limit",
    "label_smoothing_factor", "eval_delay",
}


def _scalar_problem(value: Any, annotation: Any) -> str | None:
    """Why `value` can't fill a TrainingArguments field typed bool, int, float, str or an enum
    (or that | None).

    transformers stores whatever it is given (`learning_rate: "1e-5"` fails only at the first
    optimizer step), so we check these; other unions (`report_to`, `deepspeed`) are left to it.
    """
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = set(typing.get_args(annotation)) if union else {annotation}
    if value is None and type(None) in kinds:
        return None
    kinds.discard(type(None))
    if choices := _enum_choices(annotation):  # `SomeEnum | str`: one of the enum's values
        if not isinstance(value, str) or value not in choices:
            return f"expected one of {', '.join(choices)} (got {value!r})"
        return None
    if kinds == {str} and not isinstance(value, str):
        return f"input should be a valid string (got {value!r})"
    want = kinds.pop() if len(kinds) == 1 else None
    if want not in _SCALARS:
        return None if _matches(value, annotation) else f"input should be {_describe(annotation)} (got {value!r})"
    if want is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, int if want is int else (int, float)) and not isinstance(value, bool)
    if ok:
        return None
    hint = ""
    if want is float and isinstance(value, str):
        try:
            float(value)
            hint = "; YAML 1.1 reads 1e-5 as text: write 1.0e-5 (a dot, and a sign on any exponent)"
        except ValueError:
            pass
    return f"input should be {_SCALARS[want]} (got {value!r}){hint}"


def _matches(value: Any, annotation: Any) -> bool:
    """`value` fits `annotation` as far as YAML can tell (unions, None, scalars, str, list[...], dict);
    anything fancier is taken on trust and left to transformers."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation in (int, float):
        return isinstance(value, int if annotation is int else (int, float)) and not isinstance(value, bool)
    if annotation is str or _enum_choices(annotation):
        return isinstance(value, str)
    if origin is list or annotation is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def _describe(annotation: Any) -> str:
    names = []
    for a in typing.get_args(annotation) or (annotation,):
        if a is type(None):
            continue
        inner = typing.get_args(a)
        names.append(f"a list of {inner[0].__name__}" if typing.get_origin(a) is list and inner
                      else getattr(a, "__name__", str(a)))
    return " or ".join(names) or str(annotation)



def snapshot_now() -> dict[str, Any]:
    """What the snapshot holds for the installed versions."""
    base = {name: encode(t) for name, t in live_fields().items()}
    extra = {name: encode(t) for name, t in live_fields(grpo=True).items() if name not in base}
    return {**_versions(), "fields": base, "grpo_fields": extra}


def write_snapshot() -> None:
    now = snapshot_now()

    def block(specs: dict[str, Any]) -> str:  # one field a line, so a version bump diffs readably
        return "{\n" + ",\n".join(f"  {json.dumps(n)}: {json.dumps(s)}" for n, s in sorted(specs.items())) + "\n}"

    SNAPSHOT.write_text(f'{{"transformers": {json.dumps(now["transformers"])}, "trl": {json.dumps(now["trl"])},\n'
                        f'"fields": {block(now["fields"])},\n"grpo_fields": {block(now["grpo_fields"])}}}\n')


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT} for {_versions()}", file=sys.stderr)
