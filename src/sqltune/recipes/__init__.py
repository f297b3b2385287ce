"""The recipes: each its own module, sharing session.py and never importing each other
(torchtune's layout).

    sft.py      supervised fine-tuning with the HF Trainer (completion-only labels, the memory plan)
    grpo.py     GRPO with TRL's GRPOTrainer and the execution reward (rewards.py)
    choose.py   `run`: the one place that picks one (a `grpo:` block means GRPO); cli and search call it
"""

from sqltune.recipes.choose import run

__all__ = ["run"]
