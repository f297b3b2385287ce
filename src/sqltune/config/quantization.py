"""The `quantization:` block: QLoRA's frozen base in 4 or 8 bits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sqltune.config.base import Strict


class QuantizationSettings(Strict):
    """QLoRA: the frozen base loaded in 4 or 8 bits by bitsandbytes (transformers' BitsAndBytesConfig)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type (bnb_4bit_quant_type)")
    double_quant: bool = Field(True, description="quantise the quantisation constants too")
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
