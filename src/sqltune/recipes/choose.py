"""The one place that picks a recipe: SFT unless the experiment has a `grpo:` block."""

from __future__ import annotations

from typing import Any

import transformers

from sqltune import config, core_api, session


def run(exp: config.Experiment, trial: core_api.Trial, *, fresh: bool = False,
        callbacks: list[transformers.TrainerCallback] = ()) -> dict[str, Any]:
    """Train one trial with its recipe; returns the summary, which the run folder also keeps."""
    if exp.hparams.grpo is not None:
        from sqltune.recipes import grpo  # TRL is imported only by the runs that use it

        recipe: session.Recipe = grpo.Recipe(exp)
    else:
        from sqltune.recipes import sft

        recipe = sft.Recipe(exp)
    return session.run(exp, trial, recipe, fresh=fresh, callbacks=callbacks)
