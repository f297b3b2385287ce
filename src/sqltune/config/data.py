"""The `data:` block: where rows come from, how they are split, how many."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, confloat, field_validator, model_validator

from sqltune.config.base import Strict, check, no_password
from sqltune.config.prompt import sql_dialect


class SourceSpec(Strict):
    """One source of a `data.source` list, with how much of it the mix takes."""

    source: str = Field(description="as data.source: 'synthetic', a file/glob, spider:PATH, bird:PATH, "
                                    "text2sql-data:PATH, a hub dataset name")
    max_rows: PositiveInt | None = Field(None, description="cap: the first N rows of this source's bucket "
                                                           "(per split where it brings its own); None = data.max_rows")
    weight: confloat(gt=0) = Field(1.0, description="its training rows repeated this many times (0.5: a seeded half)")
    split: Literal["train", "valid", "test"] | None = Field(
        None, description="put the whole source in this split (e.g. test: leave this dataset out of training)")


class DataSettings(Strict):
    source: str | list[str | SourceSpec] = Field(
        "synthetic", description="'synthetic', a hub dataset name, a local file/glob, a benchmark folder "
                                 "(spider:PATH, bird:PATH), a text2sql-data set (text2sql-data:PATH/NAME.json), "
                                 "or a list of these (each may be {source, max_rows, weight, split})")
    train: str | None = Field(None, description="explicit splits instead of source + a random split: a file or glob")
    valid: str | None = Field(None, description="with train: the validation file or glob")
    test: str | None = Field(None, description="with train: the test file or glob (optional)")
    split_by: Literal["row", "db", "question", "query"] = Field(
        "row", description="row: the reference's random 80/10/10 of rows; db: whole databases per split (unseen "
                           "schemas); question | query: a text2sql-data set's own question or query split")
    fold: int = Field(0, ge=0, le=9, description="text2sql-data's 10-fold sets (academic, imdb, restaurants, yelp): "
                                                 "this fold is test, the next valid, the other eight train")
    database: str | None = Field(None, description="run every row's SQL on this database instead of its own: a SQLite "
                                                  "file, a PostgreSQL URL or DSN (postgresql://reader@host/db; password "
                                                  "from PGPASSWORD or ~/.pgpass), or a DuckDB file (x.duckdb); {db_id} "
                                                  "becomes each row's db_id (as `sqltune copy-db` lays Spider out)")
    dialect: str = Field("sqlite", description="the SQL dialect the corpus's gold queries are written in (sqlglot's "
                                               "name); format.dialect is what the model is taught")
    evidence: bool = Field(True, description="bird: add each question's evidence hint to the prompt")
    subset: Literal["easy", "medium", "hard", "all"] = "easy"
    max_rows: PositiveInt = Field(10_000, description="first N rows of the bucket, in source order (per split)")
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None
    split_seed: int = 123
    synthetic_rows: PositiveInt = Field(12_000, description="rows the built-in generator makes before bucketing")
    synthetic_seed: int = 0
    cache_dir: str | None = Field(None, description="built splits; None = $SQLTUNE_CACHE/data (~/.cache/sqltune/data)")

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        return sql_dialect(value, "hyperparameters.data.dialect")

    @field_validator("database")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        """A password written here would travel into every checkpoint's config copy, the summary
        and the cached splits: it must come from PGPASSWORD or ~/.pgpass instead."""
        no_password(value, "hyperparameters.data.database")
        return value

    @model_validator(mode="after")
    def _splits_one_way(self) -> DataSettings:
        """Splits given as files, or a source split one way; the split a source allows. Whether the
        files and folders exist is the pre-flight's (preflight.py)."""
        where, lines = "hyperparameters.data", []
        if any(getattr(self, k) is not None for k in ("train", "valid", "test")):
            if self.train is None or self.valid is None:
                lines.append(f"{where}.train and {where}.valid: set both (and optionally test), or neither")
            if "source" in self.model_fields_set:
                lines.append(f"{where}.source: set source, or train/valid/test files, not both")
            if self.split_by != "row":
                lines.append(f"{where}.split_by: the splits are given as files; split_by applies to a random split of source")
        specs = source_specs(self)
        for spec in specs:
            kind, _, folder = spec.source.partition(":")
            if kind in ("spider", "bird") and folder and self.split_by != "row" and not isinstance(self.source, list):
                # a list: each source is split its own way, or all pooled by database
                lines.append(f"{where}.split_by: {kind} brings its own splits (train, dev); split_by applies to a random split")
        if self.split_by in ("question", "query") and not any(s.source.startswith("text2sql-data:") for s in specs):
            lines.append(f"{where}.split_by: {self.split_by} is a text2sql-data set's own split; no source is one "
                         "(text2sql-data:PATH)")
        if not specs:
            lines.append(f"{where}.source: an empty list; name at least one source")
        check(lines)
        return self


def source_specs(data: DataSettings) -> list[SourceSpec]:
    """`data.source` as a list of specs: one for a plain source, one per item of a list."""
    items = data.source if isinstance(data.source, list) else [data.source]
    return [SourceSpec(source=item) if isinstance(item, str) else item for item in items]
