"""PEFT's LoRA variants under their PEFT names (lora.use_rslora, use_dora, init_lora_weights):
passed through to peft.LoraConfig, the fused branch used where it computes the same thing and
PEFT's own forward where it doesn't (DoRA), and a DoRA run that trains, saves and loads back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import TINY_LLAMA, tiny_config, write_config
from sqltune import cli, config, model, rundir
from sqltune.model import lora


def _net(**variant: object) -> torch.nn.Module:
    cfg = config.LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0, **variant)
    tokenizer = model.load_tokenizer(config.ModelSettings(from_config=dict(TINY_LLAMA), tokenizer="smollm2"))
    torch.manual_seed(0)
    return model.load_model(config.ModelSettings(from_config=dict(TINY_LLAMA), tokenizer="smollm2"), tokenizer, cfg)


def _peft_forward(net: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The same model with every fused layer put back to PEFT's own class."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = [m for m in net.modules() if type(m) is lora._fused_lora_class()]
    for m in fused:
        m.__class__ = LoraLinear
    try:
        with torch.no_grad():
            return net(input_ids=ids).logits
    finally:
        for m in fused:
            m.__class__ = lora._fused_lora_class()


@pytest.mark.parametrize("variant", [{"use_rslora": True}, {"use_dora": True}, {"init_lora_weights": "gaussian"},
                                     {"init_lora_weights": False}])
def test_variant_reaches_peft_and_the_fused_path_computes_what_peft_does(variant: dict) -> None:
    net = _net(**variant)
    layer = next(m for m in net.modules() if type(m) is lora._fused_lora_class())
    name = layer.active_adapters[0]
    expect_scale = 8 / math.sqrt(4) if variant.get("use_rslora") else 8 / 4
    assert layer.scaling[name] == pytest.approx(expect_scale)
    assert (name in layer.lora_variant) == bool(variant.get("use_dora"))  # DoRA: PEFT's forward, not the fused one
    if variant.get("init_lora_weights") is False:
        assert layer.lora_B[name].weight.abs().sum() > 0
    else:
        torch.nn.init.normal_(layer.lora_B[name].weight, std=0.1)  # make the adapter matter
    ids = torch.randint(5, 500, (2, 12))
    net.eval()
    with torch.no_grad():
        fused = net(input_ids=ids).logits
    torch.testing.assert_close(fused, _peft_forward(net, ids))


def test_dora_run_trains_saves_and_loads(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, lora={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "use_dora": True,
                                      "use_rslora": True})
    cfg["hyperparameters"]["training_args"].update(max_steps=2, eval_steps=2, save_steps=2)
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    ckpt = cli.checkpoint_folder(str(tmp_path / "run"))
    saved = json.loads((ckpt / "adapter_config.json").read_text())
    assert saved["use_dora"] is True and saved["use_rslora"] is True
    net, _ = model.load_checkpoint(ckpt, rundir.checkpoint_hparams(ckpt))
    assert any("lora_magnitude_vector" in n for n, _ in net.named_parameters())


def test_a_pissa_init_is_refused_by_name(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, lora={"init_lora_weights": "pissa"})
    with pytest.raises(config.ConfigError, match="lora.init_lora_weights: .pissa. is not supported.*adapter alone"):
        config.build(cfg)
