"""The eight datasets of jkkummerfeld/text2sql-data as a data source: `text2sql-data:PATH`.

PATH is one dataset's JSON file in a copy of that repository's data/ folder (academic, advising,
atis, geography, imdb, restaurants, scholar, yelp), in the format of Finegan-Dollak et al. (2018),
"Improving Text-to-SQL Evaluation Methodology". Beside it sqltune reads `<name>-schema.csv`
and, where the copy has one, `<name>-db*.sqlite`. Each sentence of an entry becomes one row:

    instruction  the sentence, its variables filled in from the sentence's `variables`
    input        CREATE TABLE statements rendered from `<name>-schema.csv`, with keys
    response     the entry's first SQL, variables filled in as SQL literals
    golds        every SQL of the entry (a prediction matching any one counts)
    db_id        the dataset's name
    db_path      the dataset's SQLite file (reconciled, below), when the copy has one
    question_split / query_split   the dataset's own split labels of the row

Splits (`data.split_by`): `question` and `query` are the dataset's own question split and query
split. The large datasets label rows train / dev / test (advising also `exclude`, dropped); the
small ones (academic, imdb, restaurants, yelp) label 10 cross-validation folds 0-9, and then fold
`data.fold` is test, the next fold (mod 10) valid, the other eight train.

Why the schema text comes from the CSV even when a database exists: the SQLite files were
converted in 2020 and are marked untested upstream, and they can disagree with the schema the
SQL was written against (restaurants' file names RESTAURANT.ID `RESTAURANT_ID`, so 354 of its
378 gold queries fail on it as shipped). So the CSV is the truth: a column the file names
differently, at the same place in the same table, is renamed in a copy of the file under
sqltune's cache, and rows whose every gold query still fails on that copy are dropped and
named. Foreign keys are not listed in the CSVs (only a y/n flag, and not in every file), so they
are inferred: a column named as another table's one-column primary key, or `<table>ID` /
`<table>_ID`, references that table.

Copies of the repository often lack the large SQLite files (advising, atis): that is one line
in the log, and such a dataset is scored by fuzzed execution on databases built from its
CREATE TABLE text, as are the datasets the repository never shipped a database for.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from sqltune.data.text2sql_schema import create_tables, find_database, read_schema_csv, reconciled_database
from sqltune.errors import DataError
from sqltune.sql import execute

log = logging.getLogger(__name__)

PREFIX = "text2sql-data"
SPLIT_NAMES = {"train": "train", "dev": "valid", "test": "test"}  # the dataset's label -> ours
DROPPED_LABELS = ("exclude",)  # advising's questions left out of every split upstream
FOLDS = 10
GOLD_TIMEOUT_S = 5.0  # one gold query on the dataset's own database


def is_text2sql_data(source: str) -> bool:
    kind, sep, path = source.partition(":")
    return kind == PREFIX and bool(sep) and bool(path.strip())


def json_path(source: str) -> Path:
    return Path(source.partition(":")[2]).expanduser()


# ---- questions --------------------------------------------------------------------------------------


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_number(value: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", value.strip()) is not None


def _names_pattern(names: list[str]) -> re.Pattern[str] | None:
    names = sorted((n for n in names if n), key=len, reverse=True)  # name10 before name1
    return re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])") if names else None


def fill_question(text: str, values: dict[str, str]) -> str:
    """The sentence with each variable name replaced by its value."""
    pattern = _names_pattern(list(values))
    return pattern.sub(lambda m: values[m.group(1)], text) if pattern else text


def fill_sql(sql: str, values: dict[str, str]) -> str:
    """The query with its variables filled in: a double-quoted string of the dataset (its string
    literals are double-quoted) becomes a single-quoted SQL literal with the values inside it; a
    bare variable becomes its value when that is a number, else a quoted literal."""
    pattern = _names_pattern(list(values))

    def inside(text: str) -> str:
        return pattern.sub(lambda m: values[m.group(1)], text) if pattern else text

    out, pos = [], 0
    for m in re.finditer(r'"([^"]*)"', sql):
        out.append(_bare(sql[pos:m.start()], values, pattern))
        out.append(_literal(inside(m.group(1))))
        pos = m.end()
    out.append(_bare(sql[pos:], values, pattern))
    return "".join(out)


def _bare(text: str, values: dict[str, str], pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return text
    return pattern.sub(lambda m: values[m.group(1)] if _is_number(values[m.group(1)]) else _literal(values[m.group(1)]), text)


def _values(entry: dict[str, Any], sentence: dict[str, Any]) -> dict[str, str]:
    """A sentence's variable values; an empty or absent one takes the entry's example (upstream:
    "in the SQL only case, this is what is used")."""
    examples = {str(v.get("name")): str(v.get("example", "")) for v in entry.get("variables") or [] if v.get("name")}
    given = {str(k): str(v) for k, v in (sentence.get("variables") or {}).items()}
    return {name: given.get(name) or examples.get(name, "") for name in {*examples, *given}}


def split_of(label: str, fold: int) -> str | None:
    """Our split for one of the dataset's labels: train/dev/test, or a cross-validation fold number
    (fold `fold` is test, the next valid, the rest train); None for a dropped label."""
    label = str(label).strip().lower()
    if label in SPLIT_NAMES:
        return SPLIT_NAMES[label]
    if label.isdigit():
        n = int(label) % FOLDS
        return "test" if n == fold % FOLDS else "valid" if n == (fold + 1) % FOLDS else "train"
    if label in DROPPED_LABELS:
        return None
    raise DataError(f"unknown split label {label!r} (expected train, dev, test, exclude or a fold number 0-9)")


def _entries(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{PREFIX}:{path}: no such file (one dataset's JSON file in text2sql-data's data/ folder, "
                        f"e.g. data/restaurants.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of entries (text2sql-data's format), got {type(data).__name__}")
    return data


def read(source: str, cache_dir: Path, *, timeout_s: float = GOLD_TIMEOUT_S) -> tuple[list[dict[str, Any]], list[str]]:
    """Every question of a `text2sql-data:PATH` source as a row (module doc), in file order, and a
    line per dropped row (advising's `exclude`, or every gold failing on the database).

    Raises:
        DataError: the file is missing or not the dataset's format; the message names the entry.
    """
    from tqdm.auto import tqdm

    path = json_path(source)
    entries = _entries(path)
    tables = read_schema_csv(path.parent / f"{path.stem}-schema.csv")
    schema_text = create_tables(tables)
    db = find_database(path)
    if db is None:
        log.warning("%s: no %s-db*.sqlite beside it (copies of text2sql-data often lack the large ones); "
                    "scored by fuzzed execution on databases built from %s-schema.csv", source, path.stem, path.stem)
    else:
        db = reconciled_database(db, tables, cache_dir / "text2sql-data")
    rows, dropped = [], []
    for i, entry in enumerate(tqdm(entries, desc=f"{path.stem} questions", unit="entry",
                                   disable=db is None or len(entries) < 50), 1):
        where = f"{path.name} entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("sql"), list) or not entry["sql"] \
                or not isinstance(entry.get("sentences"), list):
            raise DataError(f"{where}: expected an object with 'sql' (a list of queries) and 'sentences'")
        for j, sentence in enumerate(entry["sentences"], 1):
            if not isinstance(sentence, dict) or not isinstance(sentence.get("text"), str):
                raise DataError(f"{where} sentence {j}: expected an object with 'text'")
            values = _values(entry, sentence)
            question = fill_question(sentence["text"], values).strip()
            golds = [fill_sql(str(q), values).strip() for q in entry["sql"] if str(q).strip()]
            if sentence.get("question-split") in DROPPED_LABELS:
                dropped.append(f"{where} sentence {j}: labelled '{sentence['question-split']}' upstream")
                continue
            if db is not None:
                running = [g for g in golds if _runs(db, g, timeout_s)]
                if not running:
                    dropped.append(f"{where} sentence {j}: no gold query runs on {db.name} ({question!r:.60})")
                    continue
                golds = running
            row = {"instruction": question, "input": schema_text, "response": golds[0], "golds": golds,
                   "db_id": path.stem, "question_split": str(sentence.get("question-split", "")),
                   "query_split": str(entry.get("query-split", ""))}
            if db is not None:
                row["db_path"] = str(db)
            rows.append(row)
    if db is not None and any("no gold query runs" in d for d in dropped):
        n = sum("no gold query runs" in d for d in dropped)
        log.warning("%s: %d of %d questions dropped, no gold query of theirs runs on %s, e.g. %s",
                    source, n, len(rows) + n, db.name, next(d for d in dropped if "no gold query runs" in d))
    return rows, dropped


def _runs(db: Path, sql: str, timeout_s: float) -> bool:
    return execute.execute(db, sql, timeout_s=timeout_s, keep_open=True).ok


def splits(rows: list[dict[str, Any]], by: str, fold: int) -> dict[str, list[dict[str, Any]]]:
    """The dataset's own split of `rows` (from `read`): by its `question` or `query` labels."""
    out: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    for row in rows:
        name = split_of(row[f"{by}_split"], fold)
        if name is not None:
            out[name].append(row)
    return out
