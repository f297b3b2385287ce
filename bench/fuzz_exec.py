"""Fuzzed execution accuracy (sql.fuzz) against execution on the real database: how often they agree.

    python bench/fuzz_exec.py                   # 1,000 generator rows (seed 1), 3 fuzzed databases each
    python bench/fuzz_exec.py --rows 400 --dbs 5

Target (issue 15): the verdicts agree on >= 95% of (row, prediction) pairs. Each generator row
has a real SQLite file and its CREATE TABLE text; fuzz sees only the text. Predictions per row:
the gold, easy equivalent rewrites, and mutations that are usually wrong (`mutations`). The real
database decides what is right: a mutation that happens to return the gold's rows there counts
as right, and fuzz must say so too.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqltune.data import synthetic
from sqltune.sql import fuzz, official
from sqltune.sql.fuzz import plan as fuzz_plan
from sqltune.sql.match import parse_query

_SWAP_OP = {exp.GT: exp.GTE, exp.GTE: exp.GT, exp.LT: exp.LTE, exp.LTE: exp.LT}
_SWAP_AGG = {exp.Max: exp.Min, exp.Min: exp.Max, exp.Avg: exp.Sum, exp.Sum: exp.Avg}


def _shift(lit: exp.Literal) -> exp.Expression:
    """A different literal of the same shape: a number moved by ~20%, a date by a year, a letter changed."""
    text = str(lit.this)
    if not lit.is_string:
        if "." in text:
            return exp.Literal.number(round(float(text) * 1.2 + 1, 2))
        return exp.Literal.number(int(text) + max(1, round(abs(int(text)) * 0.2)))
    if m := re.fullmatch(r"(\d{4})(-\d{2}-\d{2}.*)", text):
        return exp.Literal.string(f"{int(m[1]) + 1}{m[2]}")
    if text.isdigit():
        return exp.Literal.string(str(int(text) + 1).zfill(len(text)))
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if not letters:
        return exp.Literal.string(text + "x")
    i = letters[-1]
    return exp.Literal.string(text[:i] + ("q" if text[i].lower() != "q" else "z") + text[i + 1:])


def _other_column(tree: exp.Expression, tables: dict[str, fuzz.Table]) -> bool:
    """Swap the first selected (else any) column for another column of its table; False if none."""
    first = tree.find(exp.Select)
    cols = [c for e in (first.expressions if first else []) for c in e.find_all(exp.Column)]
    for col in cols + list(tree.find_all(exp.Column)):
        key = fuzz_plan.resolve(col, tables)
        if key is None:
            continue
        kind = tables[key[0]].columns[key[1]].kind
        others = [c for c in tables[key[0]].columns.values() if c.name.lower() != key[1]]
        others.sort(key=lambda c: c.kind != kind)  # same kind first: the plausible mistake
        if others:
            col.set("this", exp.to_identifier(others[0].name))
            return True
    return False


def mutations(gold: str, schema_text: str) -> list[tuple[str, str]]:
    """(name, SQL) predictions for one gold query: itself, equivalent rewrites, likely-wrong mutations."""
    tree = parse_query(gold)
    tables = fuzz.parse_schema(schema_text) or {}
    out = [("gold", gold)]
    if tree is None:
        return out

    def edit(name: str, change: Callable[[exp.Expression], bool]) -> None:  # False: does not apply
        copy = tree.copy()
        if change(copy):
            out.append((name, copy.sql(dialect="sqlite")))

    def first(t: exp.Expression, *kinds: type) -> exp.Expression | None:
        return next((n for n in t.find_all(*kinds)), None)

    def swap_and(t: exp.Expression) -> bool:
        node = first(t, exp.And)
        return node is not None and bool(node.replace(exp.and_(node.expression.copy(), node.this.copy())))

    def swap_join(t: exp.Expression) -> bool:
        joins = [j for j in t.find_all(exp.Join) if isinstance(j.args.get("on"), exp.EQ)]
        for j in joins:
            on = j.args["on"]
            on.replace(exp.EQ(this=on.expression.copy(), expression=on.this.copy()))
        return bool(joins)

    def literal(t: exp.Expression) -> bool:
        where = [w for w in t.find_all(exp.Where, exp.Having)]
        lit = next((x for w in where for x in w.find_all(exp.Literal) if str(x.this) not in ("%Y", "%m")), None)
        return lit is not None and bool(lit.replace(_shift(lit)))

    def drop_where(t: exp.Expression) -> bool:
        where = first(t, exp.Where)
        if where is None:
            return False
        if isinstance(where.this, exp.Connector):
            where.this.replace(where.this.this.copy())
        else:
            where.pop()
        return True

    def aggregate(t: exp.Expression) -> bool:
        node = first(t, *_SWAP_AGG)
        return node is not None and bool(node.replace(_SWAP_AGG[type(node)](this=node.this.copy())))

    def operator(t: exp.Expression) -> bool:
        node = first(t, *_SWAP_OP)
        return node is not None and bool(
            node.replace(_SWAP_OP[type(node)](this=node.this.copy(), expression=node.expression.copy())))

    def distinct(t: exp.Expression) -> bool:
        node = first(t, exp.Distinct)
        if isinstance(node, exp.Distinct) and isinstance(node.parent, exp.Count):
            node.replace(node.expressions[0].copy())
        elif node is not None:
            node.pop()
        return node is not None

    def limit(t: exp.Expression) -> bool:
        node = first(t, exp.Limit)
        if node is None or not isinstance(node.expression, exp.Literal):
            return False
        node.set("expression", exp.Literal.number(int(str(node.expression.this)) + 1))
        return True

    edit("same: swap AND", swap_and)
    edit("same: swap join sides", swap_join)
    for name, change in (("literal", literal), ("column", lambda t: _other_column(t, tables)),
                         ("drop condition", drop_where), ("aggregate", aggregate), ("> vs >=", operator),
                         ("no DISTINCT", distinct), ("LIMIT", limit)):
        edit(name, change)
    return out


def real_verdict(db_path: str, pred: str, gold: str) -> bool:
    """Execution accuracy on the real database, as `scoring` computes it (Spider's rule)."""
    return official.spider_exec_match(db_path, pred, gold)


def agreement(rows: list[dict[str, Any]], cache_dir: Path, n_dbs: int = 3) -> dict[str, Any]:
    """Real vs fuzzed verdicts for every (row, prediction) pair; rows fuzz cannot use are counted apart."""
    pairs, unusable, gold_ok = [], 0, 0
    build_s = score_s = 0.0
    for row in rows:
        start = time.perf_counter()
        dbs = fuzz.fuzz_databases(row["input"], row["response"], n=n_dbs, cache_dir=cache_dir)
        build_s += time.perf_counter() - start
        if dbs is None:
            unusable += 1
            continue
        for name, pred in mutations(row["response"], row["input"]):
            start = time.perf_counter()
            fuzzed = fuzz.fuzz_exec_match(dbs, pred, row["response"])
            score_s += time.perf_counter() - start
            real = real_verdict(row["db_path"], pred, row["response"])
            gold_ok += name == "gold" and fuzzed
            pairs.append({"name": name, "pred": pred, "gold": row["response"], "real": real, "fuzz": fuzzed})
    usable = len(rows) - unusable
    return {
        "pairs": pairs, "unusable": unusable, "gold_ok": gold_ok / max(usable, 1),
        "agreement": sum(p["real"] == p["fuzz"] for p in pairs) / max(len(pairs), 1),
        "build_ms_per_row": 1e3 * build_s / max(len(rows), 1),
        "score_ms_per_pred": 1e3 * score_s / max(len(pairs), 1),
    }


def shape(gold: str) -> str:
    """A coarse label of a gold query, to say where disagreements come from."""
    if "DISTINCT" in gold and "JOIN" in gold:
        return "DISTINCT over a join"
    if " IN (SELECT" in gold or "EXCEPT" in gold:
        return "IN / EXCEPT subquery"
    if "HAVING" in gold:
        return "HAVING"
    if "(SELECT" in gold:
        return "scalar subquery"
    return "join" if "JOIN" in gold else "one table"


def cpu_flags() -> str:
    try:
        flags = set(next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split())
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "amx_tile", "amx_bf16") if f in flags) or "none of avx2/avx512f/amx"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dbs", type=int, default=3, help="fuzzed databases per row")
    ns = p.parse_args()
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sqltune-fuzz-bench-"))
    rows = synthetic.generate(ns.rows, ns.seed, work / "real")
    result = agreement(rows, work / "fuzz", ns.dbs)
    cached = time.perf_counter()
    for row in rows:  # second pass: every (schema, gold) is a cache hit
        fuzz.fuzz_databases(row["input"], row["response"], n=ns.dbs, cache_dir=work / "fuzz")
    hit_ms = 1e3 * (time.perf_counter() - cached) / len(rows)
    pairs = result["pairs"]
    print(f"{len(rows)} rows (seed {ns.seed}), {ns.dbs} fuzzed databases each; CPU flags: {cpu_flags()}")
    print(f"rows without a fuzz verdict: {result['unusable']}; gold right on its own fuzz dbs: {result['gold_ok']:.4f}")
    print(f"agreement: {result['agreement']:.4f} over {len(pairs)} (row, prediction) pairs")
    print(f"{'prediction':<22}{'pairs':>7}{'real right':>12}{'fuzz right':>12}{'agree':>8}")
    for name in dict.fromkeys(p["name"] for p in pairs):
        group = [p for p in pairs if p["name"] == name]
        print(f"{name:<22}{len(group):>7}{sum(p['real'] for p in group):>12}{sum(p['fuzz'] for p in group):>12}"
              f"{sum(p['real'] == p['fuzz'] for p in group) / len(group):>8.3f}")
    for fuzz_says, real_says in ((True, False), (False, True)):
        bad = [p for p in pairs if p["fuzz"] == fuzz_says and p["real"] == real_says]
        shapes = Counter(shape(p["gold"]) for p in bad).most_common()
        print(f"fuzz says {'right' if fuzz_says else 'wrong'}, real says {'right' if real_says else 'wrong'}: "
              f"{len(bad)} ({len(bad) / max(len(pairs), 1):.4f}); by gold: {', '.join(f'{k} {v}' for k, v in shapes)}")
        for p in bad[:3]:
            print(f"  [{p['name']}] gold: {p['gold']}\n  {' ' * (len(p['name']) + 3)}pred: {p['pred']}")
    print(f"cost per row: build {result['build_ms_per_row']:.2f} ms (first time), {hit_ms:.3f} ms (cached); "
          f"score {result['score_ms_per_pred']:.2f} ms per prediction")
    print(f"wall {time.perf_counter() - start:.1f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
