"""The model: tokenizer and causal LM, LoRA on top, the loss, and a memory plan for training.

    load.py     tokenizer and model from the hub, a folder, a GGUF file or a config; checkpoints
                for inference; merging an adapter
    lora.py     PEFT's LoRA, each plain LoRA linear layer run as one fused autograd node
    loss.py     the loss only where labels are, the shared prompt start run once per batch
    group_logps.py  GRPO's per-token log-probs with each group's prompt run once
    memory.py   how a batch fits the memory budget: whole, micro-batches, or checkpointing
"""

from sqltune.model.load import (count_parameters, enable_gradient_checkpointing, load_checkpoint, load_model,
                                load_tokenizer, merge_lora, pretrained_source, smollm2_folder)

__all__ = ["count_parameters", "enable_gradient_checkpointing", "load_checkpoint", "load_model", "load_tokenizer",
           "merge_lora", "pretrained_source", "smollm2_folder"]
