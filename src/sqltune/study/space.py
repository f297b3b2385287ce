"""Determined's hyperparameter specs as Optuna sees them: distributions, grids, `--set` text.

A search YAML's `hyperparameters:` block may be nested or flat (`lora.r: {...}`); either way a
searched hyperparameter is named by its dotted path, as Determined's master flattens them
(expconf.FlattenHPs) and as `config.build` unflattens `--set` keys. The grid of an int, double or
log spec is the one the master builds (master/pkg/searcher/grid.go): `count` evenly spaced points,
ints rounded half away from zero, a log spec's points spaced in the exponent.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import Any

import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sqltune.config import SEARCH_TYPES


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched hyperparameter: its dotted path (also its Optuna name) and its Determined spec.

    Categorical values Optuna can't store (mappings such as `{r: 8, lora_alpha: 16}`) travel
    through the study as JSON text and are decoded back before they reach the config.
    """

    name: str
    spec: dict[str, Any]

    @property
    def as_json(self) -> bool:
        scalar = (str, int, float, bool, type(None))
        return self.spec["type"] == "categorical" and not all(isinstance(v, scalar) for v in self.spec["vals"])

    def encode(self, value: Any) -> Any:
        return json.dumps(value, sort_keys=True) if self.as_json else value

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.as_json else value

    def distribution(self) -> BaseDistribution:
        s = self.spec
        if s["type"] == "categorical":
            return CategoricalDistribution([self.encode(v) for v in s["vals"]])
        if s["type"] == "int":
            return IntDistribution(s["minval"], s["maxval"])
        if s["type"] == "double":
            return FloatDistribution(s["minval"], s["maxval"])
        base = s.get("base", 10.0)  # log: base ** uniform(minval, maxval) is log-uniform in any base
        return FloatDistribution(base ** s["minval"], base ** s["maxval"], log=True)

    def first(self) -> Any:
        """A value in the space (the first categorical value, else the low end)."""
        return self.spec["vals"][0] if self.spec["type"] == "categorical" else self.distribution().low

    def grid(self) -> list[Any]:
        """Determined's grid points for this hyperparameter (master/pkg/searcher/grid.go)."""
        s = self.spec
        if s["type"] == "categorical":
            return list(s["vals"])
        lo, hi, count = s["minval"], s["maxval"], s["count"]
        if s["type"] == "int":
            count = min(count, hi - lo + 1)
            if count == 1:
                return [_round((lo + hi) / 2)]
            return [_round(lo + i * (hi - lo) / (count - 1)) for i in range(count)]
        points = [(lo + hi) / 2] if count == 1 else [lo + i * (hi - lo) / (count - 1) for i in range(count)]
        return points if s["type"] == "double" else [s.get("base", 10.0) ** x for x in points]


def _round(x: float) -> int:
    """Go's math.Round: halves away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def search_space(hp: dict[str, Any], prefix: str = "") -> list[Param]:
    """The searched hyperparameters of a (flat or nested) block, by dotted name, as Determined flattens them."""
    params = []
    for key, value in hp.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value.get("type") in SEARCH_TYPES:
            params.append(Param(name, value))
        elif isinstance(value, dict) and not isinstance(value.get("type"), str):
            params.extend(search_space(value, name + "."))
    return sorted(params, key=lambda p: p.name)


def grid_points(params: list[Param]) -> list[dict[str, Any]]:
    """Every trial of a grid search: the cartesian product of each hyperparameter's grid."""
    return [dict(zip([p.name for p in params], combo)) for combo in itertools.product(*(p.grid() for p in params))]


def yaml_text(value: Any) -> str:
    """A value as `--set` text that `config.parse_overrides` reads back unchanged (1e-05 -> 1.0e-05)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    return text.removesuffix("...").strip()
