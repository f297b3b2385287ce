"""The `format:` block: what the model reads (system prompt, layout, examples, schema extras) and how long it may be."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from sqltune.config.base import Strict, check

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful programmer assistant that excels at SQL. "
    "When prompted with a task and a definition of an SQL table, you "
    "respond with a SQL query to retrieve information from the table. "
    "Don't explain your reasoning, only provide the SQL query."
)


DIALECT_NAMES = {"postgres": "PostgreSQL", "duckdb": "DuckDB", "mysql": "MySQL", "tsql": "SQL Server (T-SQL)",
                 "bigquery": "BigQuery", "snowflake": "Snowflake", "oracle": "Oracle", "spark": "Spark SQL",
                 "trino": "Trino", "redshift": "Redshift", "clickhouse": "ClickHouse", "databricks": "Databricks SQL"}


def sql_dialect(value: str, field: str) -> str:
    """A sqlglot dialect name; else one line naming the field and listing the names."""
    from sqlglot.dialects.dialect import Dialects

    known = sorted(d.value for d in Dialects if d.value)
    if value not in known:
        check([f"{field}: '{value}' is not a SQL dialect sqlglot knows ({', '.join(known)})"])
    return value


class FormatSettings(Strict):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    dialect: str = Field("sqlite", description="the SQL the model learns to write (a sqlglot dialect: sqlite, postgres, "
                                               "duckdb, mysql, ...); gold written in data.dialect is transpiled to it "
                                               "when the data loads, and the system prompt names it (but for sqlite)")
    max_length: PositiveInt = 2048
    sample_rows: int = Field(0, ge=0, description="example rows per table, read from the row's database (SQLite, PostgreSQL, DuckDB), after its CREATE TABLE")
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

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        return sql_dialect(value, "hyperparameters.format.dialect")

    def system_text(self) -> str:
        """The system prompt the model reads: `system_prompt`, plus which SQL to write when the
        dialect is not SQLite (the reference's prompt, and every run before the option, is SQLite's)."""
        if self.dialect == "sqlite":
            return self.system_prompt
        return f"{self.system_prompt} Write {DIALECT_NAMES.get(self.dialect, self.dialect)} SQL."
