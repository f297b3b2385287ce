"""Similar training questions, with their SQL, for the prompt (`format.examples`: k per row).

DAIL-SQL (Gao et al. 2023) showed that text-to-SQL models write better SQL when the prompt holds a
few solved questions like the one asked. Here every row, in training and at inference, gets the
`k` training rows whose questions are closest to its own by BM25 (Okapi, `rank_bm25`, over
lower-cased words), from the same database when that has any others, the closest last (nearest
the answer). A training row never gets itself; a duplicate question elsewhere in the training
split is a fair example, as it would be for a test question. The pool is always the training
split of the run's own data config, so validation and test rows see only what training saw.

Each row gains `examples`: a list of {"question", "sql"}; `format.messages` lays them out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Index:
    """BM25 over the pool's questions, one index per database plus one over all of them."""

    def __init__(self, pool: list[dict[str, Any]]) -> None:
        from rank_bm25 import BM25Okapi  # a small, well-known BM25; scikit-learn would be a heavy dependency for one score

        self.pool = pool
        by_db: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(pool):
            by_db[str(row.get("db_id") or row.get("db_path") or "")].append(i)
        self.members = dict(by_db)
        corpus = [words(r["instruction"]) or ["_"] for r in pool]
        self.bm25 = {db: BM25Okapi([corpus[i] for i in ids]) for db, ids in self.members.items()}
        self.members["*"] = list(range(len(pool)))
        self.bm25["*"] = BM25Okapi(corpus) if pool else None

    def nearest(self, row: dict[str, Any], k: int, skip: int | None = None) -> list[int]:
        """Pool indices of the `k` questions closest to `row`'s, best first; never `skip`."""
        db = str(row.get("db_id") or row.get("db_path") or "")
        key = db if len(self.members.get(db, [])) > (1 if skip is not None else 0) else "*"
        if self.bm25.get(key) is None:
            return []
        scores = self.bm25[key].get_scores(words(row["instruction"]) or ["_"])
        ranked = sorted(range(len(scores)), key=lambda j: -scores[j])  # stable: ties keep pool order
        out = [self.members[key][j] for j in ranked if self.members[key][j] != skip]
        return out[:k]


def attach(rows: list[dict[str, Any]], pool: list[dict[str, Any]], k: int, *, rows_are_pool: bool = False
           ) -> list[dict[str, Any]]:
    """`rows`, each with `examples`: its k nearest pool rows' questions and SQL, the closest last.
    `rows_are_pool`: rows is the pool itself (the training split), so row i never gets itself."""
    if k <= 0:
        return rows
    index = Index(pool)
    out = []
    for i, row in enumerate(rows):
        found = index.nearest(row, k, skip=i if rows_are_pool else None)
        out.append({**row, "examples": [{"question": pool[j]["instruction"], "sql": str(pool[j]["response"]).strip()}
                                        for j in reversed(found)]})
    return out


def splits_with_examples(splits: Any, k: int) -> dict[str, list[dict[str, Any]]]:
    """Every split of `splits` (a DatasetDict) as a list of rows, with `k` examples each from the
    training split (the training rows never getting themselves)."""
    train = list(splits["train"])
    return {name: attach(train if name == "train" else list(split), train, k, rows_are_pool=name == "train")
            for name, split in splits.items()}
