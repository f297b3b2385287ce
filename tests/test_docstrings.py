"""The `>>>` examples in src/ run, and show what they claim (doctest, whitespace-insensitive)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
WITH_EXAMPLES = sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                       for p in SRC.rglob("*.py") if ">>> " in p.read_text())


def test_the_examples_are_found() -> None:
    assert {"sqltune.tokens", "sqltune.model.memory", "sqltune.evaluate"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples_in_docstrings_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
