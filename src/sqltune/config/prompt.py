"""The `format:` block: what the model reads (system prompt, layout, examples, schema extras) and how long it may be."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from sqltune.config.base import Strict

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful programmer assistant that excels at SQL. "
    "When prompted with a task and a definition of an SQL table, you "
    "respond with a SQL query to retrieve information from the table. "
    "Don't explain your reasoning, only provide the SQL query."
)


class FormatSettings(Strict):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_length: PositiveInt = 2048
    sample_rows: int = Field(0, ge=0, description="example rows per table, read from the row's SQLite file, after its CREATE TABLE")
    examples: int = Field(0, ge=0, description="similar training questions with their SQL in the prompt (BM25, "
                                                "same database first), in training and at inference; 0 = none")
    compact_sql: bool = Field(False, description="train on the gold SQL and schema in fewer tokens: names lower-cased, "
                                                 "XaliasN aliases renamed xN (scoring still runs the corpus's own gold)")
    layout: Literal["reference", "schema_first"] = Field(
        "schema_first", description="the user turn: reference = question, schema, answer; schema_first = schema, "
                                 "question, answer (rows of one database share their prompt up to the question)")
    prune_schema: bool = Field(True, description="a prompt over max_length loses its least relevant tables instead of its answer")
    padding_free: bool | None = Field(
        None, description="lay each batch end to end, no padding; None = on for model types known to support it")
