"""What every block shares: unknown fields refused, values frozen once read, and how a rule that
spans fields reports its problems (each a whole line naming its fields, as ConfigError prints it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

CROSS_FIELD = "sqltune_cross_field"  # the error type experiment.py prints line by line


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


def check(lines: list[str]) -> None:
    """Raise the problems a validator found, if any: one pydantic error carrying them all."""
    if lines:
        raise PydanticCustomError(CROSS_FIELD, "{text}", {"text": "; ".join(lines), "lines": list(lines)})


def no_password(value: str | None, field: str) -> None:
    """A PostgreSQL reference holding a password is refused: it would travel into every
    checkpoint's config copy, the summary and the cached splits."""
    from sqltune.sql import engine

    if value and engine.kind(value) == "postgres" and engine.display(value) != value:
        check([f"{field}: holds a password, which would be written into every checkpoint and the run's summary; "
               "remove it and set PGPASSWORD or a ~/.pgpass line instead"])
