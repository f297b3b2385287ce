"""One experiment YAML -> typed hyperparameters.

The YAML is a Determined experiment config (`det e create lora.yaml .` takes it as is). Its
`hyperparameters:` block is what the trial reads: on a cluster Determined hands it to the trial
already resolved; on one machine we resolve it here, where a `{type: const, val: x}` becomes `x`
and a search space (`int`, `double`, `log`, `categorical`) is refused unless `--set` picks a value
(`sqltune search` picks them for you).

Override order, as in nanoGPT's configurator: the YAML, then each `--set a.b=c` (values parsed as
YAML scalars). Every problem is collected and reported together in one `ConfigError` that names
the field, before any model or data loads. `training_args` is passed to
`transformers.TrainingArguments` untouched; we only check that the keys exist there.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, confloat

from sqltune import training_args
from sqltune.errors import ConfigError

SEARCH_TYPES = ("int", "double", "log", "categorical")


def cache_root() -> Path:
    """sqltune's own cache (converted models, built splits): $SQLTUNE_CACHE, else ~/.cache/sqltune.
    Read at call time, so a test or CI run can point it at an empty folder."""
    return Path(os.environ.get("SQLTUNE_CACHE") or "~/.cache/sqltune").expanduser()

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful programmer assistant that excels at SQL. "
    "When prompted with a task and a definition of an SQL table, you "
    "respond with a SQL query to retrieve information from the table. "
    "Don't explain your reasoning, only provide the SQL query."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ModelConfig(_Strict):
    name: str = Field("smollm2", description="hub name, local folder, .gguf file, or 'smollm2' (shipped offline)")
    from_config: dict[str, Any] | None = Field(None, description="build a random-init model from this config")
    tokenizer: str | None = Field(None, description="tokenizer source; defaults to `name`")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str | None = Field(None, description="eager | sdpa | flash_attention_2 | ...")
    seed: int = Field(0, description="seed for a from_config model's random init")


class LoraConfig(_Strict):
    enabled: bool = True
    r: PositiveInt = 8
    lora_alpha: PositiveInt = 32
    lora_dropout: confloat(ge=0.0, lt=1.0) = 0.1
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    # PEFT's variants, under PEFT's names, passed to peft.LoraConfig as they are
    use_rslora: bool = Field(False, description="scale by lora_alpha / sqrt(r) (rsLoRA): high ranks stay stable in a search over r")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (DoRA); runs PEFT's own forward, not the fused branch")
    init_lora_weights: bool | str = Field(
        True, description="PEFT's init of A (B is zero): true (Kaiming), gaussian, false (a non-zero B: tests only)")


class QuantizationConfig(_Strict):
    """QLoRA: the frozen base loaded in 4 or 8 bits by bitsandbytes (transformers' BitsAndBytesConfig)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type (bnb_4bit_quant_type)")
    double_quant: bool = Field(True, description="quantise the quantisation constants too")
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"


class SourceSpec(_Strict):
    """One source of a `data.source` list, with how much of it the mix takes."""

    source: str = Field(description="as data.source: 'synthetic', a file/glob, spider:PATH, bird:PATH, "
                                    "text2sql-data:PATH, a hub dataset name")
    max_rows: PositiveInt | None = Field(None, description="cap: the first N rows of this source's bucket "
                                                           "(per split where it brings its own); None = data.max_rows")
    weight: confloat(gt=0) = Field(1.0, description="its training rows repeated this many times (0.5: a seeded half)")
    split: Literal["train", "valid", "test"] | None = Field(
        None, description="put the whole source in this split (e.g. test: leave this dataset out of training)")


class DataConfig(_Strict):
    source: str | list[str | SourceSpec] = Field(
        "synthetic", description="'synthetic', a hub dataset name, a local file/glob, a benchmark folder "
                                 "(spider:PATH, bird:PATH), a text2sql-data set (text2sql-data:PATH/NAME.json), "
                                 "or a list of these (each may be {source, max_rows, weight, split})")
    train: str | None = Field(None, description="explicit splits instead of source + a random split: a file or glob")
    valid: str | None = Field(None, description="with train: the validation file or glob")
    test: str | None = Field(None, description="with train: the test file or glob (optional)")
    split_by: Literal["row", "db", "question", "query"] = Field(
        "row", description="row: the reference's random 80/10/10 of rows; db: whole databases per split (unseen "
                           "schemas); question | query: a text2sql-data set's own question or query split")
    fold: int = Field(0, ge=0, le=9, description="text2sql-data's 10-fold sets (academic, imdb, restaurants, yelp): "
                                                 "this fold is test, the next valid, the other eight train")
    evidence: bool = Field(True, description="bird: add each question's evidence hint to the prompt")
    subset: Literal["easy", "medium", "hard", "all"] = "easy"
    max_rows: PositiveInt = Field(10_000, description="first N rows of the bucket, in source order (per split)")
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None
    split_seed: int = 123
    synthetic_rows: PositiveInt = Field(12_000, description="rows the built-in generator makes before bucketing")
    synthetic_seed: int = 0
    cache_dir: str | None = Field(None, description="built splits; None = $SQLTUNE_CACHE/data (~/.cache/sqltune/data)")


class FormatConfig(_Strict):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_length: PositiveInt = 2048
    sample_rows: int = Field(0, ge=0, description="example rows per table, read from the row's SQLite file, after its CREATE TABLE")
    examples: int = Field(0, ge=0, description="similar training questions with their SQL in the prompt (BM25, "
                                                "same database first), in training and at inference; 0 = none")
    compact_sql: bool = Field(False, description="train on the gold SQL and schema in fewer tokens: names lower-cased, "
                                                 "XaliasN aliases renamed xN (scoring still runs the corpus's own gold)")
    layout: Literal["reference", "schema_first"] = Field(
        "schema_first", description="the user turn: reference = question, schema, answer; schema_first = schema, "
                                 "question, answer (rows of one database share their prompt up to the question)")
    prune_schema: bool = Field(True, description="a prompt over max_length loses its least relevant tables instead of its answer")
    padding_free: bool | None = Field(
        None, description="lay each batch end to end, no padding; None = on for model types known to support it")


class EvalConfig(_Strict):
    generate_samples: int = Field(0, ge=0, description="rows of the eval split scored by generation; 0 = off")
    max_new_tokens: PositiveInt = 128
    batch_size: PositiveInt = 16
    at_start: bool = Field(False, description="also evaluate the untrained model at step 0")
    sql_timeout_s: confloat(gt=0) = 1.0
    candidates: PositiveInt = Field(1, description="SQL candidates per question; 1 = greedy. More: execution-guided")
    decoding: Literal["beam", "sample"] = Field("beam", description="how candidates are drawn: beam search or sampling")
    temperature: confloat(gt=0) = Field(0.8, description="sampling temperature (decoding: sample)")
    pick: Literal["first_valid", "vote"] = Field(
        "first_valid", description="first_valid: the best-ranked candidate that runs; vote: the most common result")
    pick_needs_rows: bool = Field(False, description="first_valid: a candidate must also return rows")


class TrainConfig(_Strict):
    """The memory plan (memory.py): what keeps a training step under a memory budget."""

    memory_plan: bool = Field(True, description="estimate the peak before training and keep it under the budget")
    memory_budget_gib: confloat(gt=0) | None = Field(
        None, description="peak memory to stay under; None = 6 GiB on CPU, the GPU's memory on GPU")
    micro_batch_tokens: PositiveInt | None = Field(
        None, description="split each batch into passes of at most this many tokens; None = the plan decides")
    group_by_database: bool = Field(
        False, description="fill each batch from one database (and one schema) where the split allows, so the batch "
                           "computes its shared prompt once; false = the Trainer's random batches (on the generator's "
                           "data grouped batches cost accuracy: bench/NOTES.md section 12)")


class RewardWeights(_Strict):
    """Weights of the GRPO reward's parts (rewards.py); the reward is their weighted sum."""

    execution: confloat(ge=0) = Field(1.0, description="the result matches the gold's (Spider's execution rule)")
    runs: confloat(ge=0) = Field(0.1, description="partial credit: runs without error on the database")
    format: confloat(ge=0) = Field(0.1, description="a bare query: no code fence, no prose, one statement that parses")


class GRPOConfig(_Strict):
    """The GRPO stage (grpo.py): present = this experiment trains with TRL's GRPOTrainer, not SFT."""

    init_from: str | None = Field(None, description="start checkpoint: a checkpoint folder or UUID (SFT adapter or "
                                                    "full model); None = the model/lora blocks, as SFT starts")
    num_generations: int = Field(4, ge=2, description="completions sampled per prompt (the group)")
    max_completion_length: PositiveInt = Field(128, description="tokens sampled per completion")
    temperature: confloat(gt=0) = Field(1.0, description="sampling temperature")
    beta: confloat(ge=0) = Field(0.0, description="KL coefficient to the start model (LoRA: a frozen copy of "
                                                   "the start adapter; full model: a second frozen model); "
                                                   "0 = no reference model")
    sql_timeout_s: confloat(gt=0) = Field(1.0, description="per query, in the sandbox's worker process")
    rewards: RewardWeights = RewardWeights()


class Hyperparameters(_Strict):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    format: FormatConfig = FormatConfig()
    lora: LoraConfig = LoraConfig(enabled=False)
    quantization: QuantizationConfig | None = None
    eval: EvalConfig = EvalConfig()
    train: TrainConfig = TrainConfig()
    grpo: GRPOConfig | None = None
    training_args: dict[str, Any]


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


def _pydantic_problems(err: ValidationError) -> list[str]:
    """One line per problem, at the field's path. A union (data.source: text or a list) reports a
    failure per branch, tagged with the branch's type: the tags go, and a branch's failure at a
    field that another branch's error lies under (a list item's weight) is the one kept."""
    errors = [(tuple(str(p) for p in e["loc"] if not _UNION_TAG.fullmatch(str(p))), e) for e in err.errors()]
    errors = [(loc, e) for loc, e in errors if not any(o[:len(loc)] == loc and len(o) > len(loc) for o, _ in errors)]
    out = []
    for loc, e in errors:
        where = "hyperparameters." + ".".join(loc)
        if e["type"] == "extra_forbidden":
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
        problems.extend(p for p in _pydantic_problems(e) if p.split(":")[0] not in open_spaces)
    if hparams is not None:
        problems.extend(_cross_checks(hparams))
    if problems:
        raise ConfigError(problems, str(path or "config"))
    # The copy beside every checkpoint names its prompt layout even when the YAML left it out: the
    # default changed (reference -> schema_first), and a copy without it was trained on the reference's.
    hp.setdefault("format", {}).setdefault("layout", hparams.format.layout)
    return Experiment(path=path, raw=raw, hparams=hparams, resolved=hp)


def _cross_checks(hp: Hyperparameters) -> list[str]:
    out = _data_problems(hp.data)
    init = hp.lora.init_lora_weights
    if isinstance(init, str) and init != "gaussian":
        out.append(f"hyperparameters.lora.init_lora_weights: {init!r} is not supported: true, false or gaussian. "
                   "PEFT's data-driven inits (pissa, olora, corda, eva, loftq) rewrite the base weights, and a "
                   "checkpoint holds the adapter alone, so it would load onto a base it was not trained against")
    if hp.quantization is not None:
        if not hp.lora.enabled:
            out.append("hyperparameters.quantization: quantized weights can't be trained; set lora.enabled: true "
                       "(QLoRA) or remove quantization for a full fine-tune")
        if hp.training_args.get("deepspeed"):
            out.append("hyperparameters.quantization: not supported with training_args.deepspeed "
                       "(ZeRO + bitsandbytes is untested here); use one GPU per trial, or DDP")
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            out.append("hyperparameters.quantization: needs the bitsandbytes package: pip install bitsandbytes")
    m = hp.model
    for field in ("name", "tokenizer"):
        if (why := local_model_problem(getattr(m, field))) is not None:
            out.append(f"hyperparameters.model.{field}: {why}")
    if m.from_config is not None and "name" in m.model_fields_set:
        out.append("hyperparameters.model: set name or from_config, not both (from_config builds a random-init model)")
    if m.from_config is not None and "model_type" not in m.from_config:
        out.append("hyperparameters.model.from_config.model_type: required field is missing (e.g. llama)")
    elif m.from_config is not None:
        out.extend(_from_config_problems(m.from_config))
    if hp.eval.generate_samples and hp.eval.max_new_tokens >= hp.format.max_length:
        out.append("hyperparameters.eval.max_new_tokens must be smaller than format.max_length")
    return out


def _data_problems(data: DataConfig) -> list[str]:
    where, out = "hyperparameters.data", []
    explicit = [k for k in ("train", "valid", "test") if getattr(data, k) is not None]
    if explicit:
        if data.train is None or data.valid is None:
            out.append(f"{where}.train and {where}.valid: set both (and optionally test), or neither")
        if "source" in data.model_fields_set:
            out.append(f"{where}.source: set source, or train/valid/test files, not both")
        if data.split_by != "row":
            out.append(f"{where}.split_by: the splits are given as files; split_by applies to a random split of source")
    specs = source_specs(data)
    for i, spec in enumerate(specs):
        field = f"{where}.source" + (f"[{i}]" if isinstance(data.source, list) else "")
        kind, _, folder = spec.source.partition(":")
        if kind in ("spider", "bird") and folder:
            if not Path(folder).expanduser().is_dir():
                out.append(f"{field}: no such folder '{folder}' (a {kind} benchmark folder, as downloaded)")
            if data.split_by != "row" and not isinstance(data.source, list):  # a list: each its own way, or pooled by db
                out.append(f"{where}.split_by: {kind} brings its own splits (train, dev); split_by applies to a random split")
        if kind == "text2sql-data" and folder and not Path(folder).expanduser().is_file():
            out.append(f"{field}: no such file '{folder}' (one dataset's JSON file in text2sql-data's data/ folder, "
                       "e.g. text2sql-data:text2sql-data/data/restaurants.json)")
    if data.split_by in ("question", "query") and not any(s.source.startswith("text2sql-data:") for s in specs):
        out.append(f"{where}.split_by: {data.split_by} is a text2sql-data set's own split; no source is one "
                   "(text2sql-data:PATH)")
    if not specs:
        out.append(f"{where}.source: an empty list; name at least one source")
    return out


def source_specs(data: DataConfig) -> list[SourceSpec]:
    """`data.source` as a list of specs: one for a plain source, one per item of a list."""
    items = data.source if isinstance(data.source, list) else [data.source]
    return [SourceSpec(source=item) if isinstance(item, str) else item for item in items]


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
    import transformers

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


def load(path: str | os.PathLike, overrides: list[str] = ()) -> Experiment:
    path = Path(path)
    return build(read_yaml(path), overrides, path)
