"""Tuning settings, read from ``[tune]``: the search space, the objective, constraints, periods.

A search-space entry names a dispatch setting by its dotted path into ``[sites.dispatch]``
(the keys :func:`~pueflow.optimizers.assets.apply_overrides` understands): ``horizon``,
``redispatch``, ``battery.soc_min_pct``, ``carbon.price_per_t``, ``jobs.0.max_kw``,
``forecast.load_tau_h``, ``cooling.0.supply_max_c``. A list item may be named instead of
numbered (``jobs.batch-train.max_kw``, ``cooling.d2c.supply_max_c``).

Settings that are facts rather than choices (the tariff the site pays, the history's step,
the penalties the realised bill counts) cannot be tuned: a tuner would otherwise "win" by
changing the price instead of the dispatch. This module imports nothing heavy:
:mod:`pueflow.config.models` imports it at start-up.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pueflow.config.dispatch import DispatchSpec

#: Metrics an objective can weigh (all minimised; give REF a negative weight to maximise it).
METRICS = {
    "cost": "realised cost at the configured prices: energy + carbon + demand + wear + DR - export "
            "+ terminal-SoC shortfall [currency]",
    "co2_kg": "grid CO2 [kg]", "co2_t": "grid CO2 [t]",
    "energy_cost": "energy bill [currency]", "demand_cost": "demand charge [currency]",
    "peak_kw": "billed import peak: in the demand-charged hours, or all hours if the tariff has no "
               "demand charge [kW]",
    "import_peak_kw": "grid import peak over all hours [kW]", "pue": "facility / IT energy [-]",
    "ref": "renewable energy factor [-]", "curtailed_kwh": "curtailed renewables [kWh]",
    "unmet_h": "training work not done by its deadlines [full-power h]",
}
#: Dotted keys (or prefixes) that are facts, with why and what to tune instead.
FIXED = {
    "step": "the dispatch step is fixed by the history's resolution; resample the history instead",
    "input_window": "the KPI window the live dispatcher reads does not change a backtest",
    "tariff": "the tariff is what the site pays, not a control setting (the score would reward a "
              "lower price); tune controller weights such as carbon.price_per_t instead",
    "carbon.intensity_kg_per_kwh": "the grid's intensity is a fact of the history; tune "
                                   "carbon.price_per_t (the weight the LP puts on CO2) instead",
    "grid.events": "demand-response events are commitments, not settings",
    "grid.dr_penalty_per_kwh": "the DR penalty is part of the realised bill; it cannot be a tuned weight",
    "curtailment_cost_per_kwh": "curtailment cost is part of the realised bill; it cannot be a tuned weight",
    "forecast.path": "an external forecast file is an input, not a setting",
}
_DURATION_KEYS = ("horizon", "redispatch", "input_window", "step")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(pydantic model inside ``annotation``, whether it is a list of them)."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        inner, _ = _model_of(typing.get_args(annotation)[0])
        return inner, True
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            m, is_list = _model_of(a)
            if m is not None:
                return m, is_list
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def resolve_key(key: str) -> tuple[str, Any]:
    """Check ``key`` against :class:`DispatchSpec`; return (leaf field name, its annotation).

    Raises ``ValueError`` naming the bad part with a did-you-mean.
    """
    parts = key.split(".")
    if not key or any(not p for p in parts):
        msg = f"{key!r} is not a dotted dispatch key; write e.g. 'battery.soc_min_pct' or 'jobs.0.max_kw'"
        raise ValueError(msg)
    for fixed, why in FIXED.items():
        if key == fixed or key.startswith(fixed + "."):
            msg = f"{key!r} cannot be tuned: {why}"
            raise ValueError(msg)
    model: type[BaseModel] = DispatchSpec
    i, path = 0, ""
    while True:
        part = parts[i]
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.5)
            hint = f"did you mean {path + close[0]!r}? " if close else ""
            where = f"[sites.dispatch.{path[:-1]}]" if path else "[sites.dispatch]"
            msg = (f"unknown dispatch setting {key!r}: {where} has no {part!r}; {hint}"
                   f"known: {', '.join(sorted(fields))}")
            raise ValueError(msg)
        ann = fields[part].annotation
        sub, is_list = _model_of(ann)
        path += part + "."
        i += 1
        if sub is None:
            if i != len(parts):
                msg = f"{key!r}: {path[:-1]!r} is a value, not a table; end the key there"
                raise ValueError(msg)
            return part, ann
        if is_list:
            if i >= len(parts):
                msg = (f"{key!r} is a list; name one item and a field, e.g. '{path}0.{_example_field(sub)}' "
                       f"(an index or the item's name)")
                raise ValueError(msg)
            path += parts[i] + "."
            i += 1
        if i >= len(parts):
            msg = f"{key!r} is a table; name a field in it, e.g. '{path}{_example_field(sub)}'"
            raise ValueError(msg)
        model = sub


def _example_field(model: type[BaseModel]) -> str:
    return next((n for n, f in model.model_fields.items() if "number" in _leaf_kinds(f.annotation)),
                next(iter(model.model_fields)))


def _leaf_kinds(annotation: Any) -> set[str]:
    """Python kinds a leaf annotation admits: 'number', 'str', 'bool', 'literal'."""
    out: set[str] = set()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            out |= _leaf_kinds(a)
        return out
    if origin is Literal:
        return {"literal"}
    if annotation is bool:
        return {"bool"}
    if annotation in (int, float):
        return {"number"}
    if annotation is str:
        return {"str"}
    if annotation is type(None):
        return set()
    return {"other"}


class ParamSpec(_Spec):
    """One search-space entry (``[[tune.space]]``)."""

    key: str = Field(description="dotted key into [sites.dispatch], e.g. 'battery.soc_min_pct'")
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0, description="grid spacing (float/int); not with log")
    log: bool = Field(False, description="sample on a log scale (low must be > 0)")
    choices: list[str | bool | int | float] = Field(default_factory=list, description="categorical values")
    unit: Literal["", "s", "m", "h", "d"] = Field(
        "", description="numbers become durations: horizon with low = 6, high = 48, unit = 'h' -> '6h'..'48h'")

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        resolve_key(v.strip())
        return v.strip()

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        k = self.key
        _, ann = resolve_key(k)
        kinds = _leaf_kinds(ann)
        leaf = k.split(".")[-1]
        if self.type == "categorical":
            if not self.choices:
                msg = f"{k!r}: a categorical entry needs choices = [...], e.g. choices = ['12h', '24h']"
                raise ValueError(msg)
            if self.low is not None or self.high is not None or self.log or self.step is not None or self.unit:
                msg = f"{k!r}: categorical takes only choices; remove low/high/step/log/unit"
                raise ValueError(msg)
            if len({repr(c) for c in self.choices}) != len(self.choices):
                msg = f"{k!r}: choices {self.choices} repeat a value; list each once"
                raise ValueError(msg)
            return self
        if self.choices:
            msg = f"{k!r}: choices only apply to type = 'categorical'; set type = 'categorical' or give low/high"
            raise ValueError(msg)
        if self.low is None or self.high is None:
            msg = f"{k!r}: a {self.type} entry needs low and high, e.g. low = 10, high = 40"
            raise ValueError(msg)
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            msg = f"{k!r}: low and high must be finite numbers"
            raise ValueError(msg)
        if self.low > self.high:
            msg = f"{k!r}: low {self.low:g} > high {self.high:g}; swap them"
            raise ValueError(msg)
        if self.low == self.high:
            msg = f"{k!r}: low == high == {self.low:g} leaves nothing to search; set it in [sites.dispatch] instead"
            raise ValueError(msg)
        if self.log and self.low <= 0:
            msg = f"{k!r}: log scale needs low > 0 (low = {self.low:g}); raise low or set log = false"
            raise ValueError(msg)
        if self.log and self.step is not None:
            msg = f"{k!r}: log scale and step cannot be combined; drop one"
            raise ValueError(msg)
        if self.type == "int" and any(v is not None and float(v) != int(v)
                                      for v in (self.low, self.high, self.step)):
            msg = f"{k!r}: an int entry needs whole low/high/step; use type = 'float' for fractions"
            raise ValueError(msg)
        if self.unit:
            if leaf not in _DURATION_KEYS:
                msg = f"{k!r}: unit only applies to duration settings ({', '.join(_DURATION_KEYS)}); remove it"
                raise ValueError(msg)
            if self.low <= 0:
                msg = f"{k!r}: a duration must be > 0 (low = {self.low:g})"
                raise ValueError(msg)
        elif leaf in _DURATION_KEYS:
            msg = (f"{k!r} is a duration: add unit = 'h' (numbers become '12h', ...) or use "
                   f"type = 'categorical' with choices = ['12h', '24h']")
            raise ValueError(msg)
        elif "number" not in kinds:
            msg = f"{k!r} is not a number; use type = 'categorical' with its allowed values"
            raise ValueError(msg)
        return self

    def bounds(self) -> tuple[float, float]:
        """Return ``(low, high)`` of a float or int entry (in the entry's own unit).

        Raises
        ------
        ValueError
            For a categorical entry, which has choices instead of bounds (numeric entries
            always have both: the model validator requires them).
        """
        if self.low is None or self.high is None:
            msg = f"{self.key!r}: a {self.type} entry has no low/high; read its choices instead"
            raise ValueError(msg)
        return self.low, self.high

    def value(self, raw: Any) -> Any:
        """Return the dispatch value for a sampled ``raw``.

        Parameters
        ----------
        raw : Any
            Value drawn by the sampler.

        Returns
        -------
        Any
            ``raw`` itself, or a duration string when ``unit`` is set (floats written with
            ``:g``, so ``12.0`` with unit ``h`` gives ``"12h"``).
        """
        if self.unit:
            return f"{raw:g}{self.unit}" if isinstance(raw, float) else f"{raw}{self.unit}"
        return raw


class TuneSpec(_Spec):
    """``[tune]``: what to tune, against what, over which history."""

    site: str = Field("", description="site id to tune; default the first site with [sites.dispatch]")
    policy: Literal["mpc", "rule"] = Field("mpc", description="policy whose settings are tuned")
    forecaster: Literal["default", "perfect"] = "default"
    cooling: Literal["physics", "planes"] = Field("physics", description="plant cooling model of the backtest")
    objective: Literal["cost", "co2", "weighted"] = "cost"
    weights: dict[str, float] = Field(default_factory=dict,
                                      description="objective = 'weighted': metric -> weight, e.g. {cost = 1, co2_t = 400}")
    max_unmet_h: float = Field(0.0, ge=0, description="constraint: training work left undone [full-power h]")
    max_peak_kw: float | None = Field(None, gt=0, description="constraint: billed import peak (see METRICS['peak_kw']) [kW]")
    max_chip_violations: int | None = Field(None, ge=0, description="constraint: steps over a chip limit")
    start: datetime | None = Field(None, description="history window start (time-zone aware); default: input's")
    end: datetime | None = Field(None, description="history window end, exclusive; default: input's")
    split: datetime | None = Field(None, description="train before, validate from; default end - validation_days")
    validation_days: float = Field(7.0, ge=0, description="validation period at the end of the window")
    warmup_days: float = Field(1.0, ge=0, description="history each period starts with that only feeds forecasters")
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: int = Field(10, ge=1, description="random trials before TPE models the space")
    pruner: Literal["median", "none"] = "median"
    prune_after_days: int = Field(3, ge=0, description="no pruning before this many simulated days")
    study: str = Field("", description="study name; default 'pueflow-<site>-<digest of this section>'")
    space: list[ParamSpec] = Field(min_length=1, description="[[tune.space]] entries")

    @field_validator("start", "end", "split")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            msg = "give a time-zone-aware time, e.g. 2026-07-01T00:00:00Z"
            raise ValueError(msg)
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            msg = "add at least one [[tune.space]] entry, e.g. key = 'battery.soc_min_pct', low = 10, high = 40"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TuneSpec:
        keys = [p.key for p in self.space]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            msg = f"search-space keys {dup} appear more than once; keep one entry per key"
            raise ValueError(msg)
        if self.objective == "weighted":
            if not self.weights:
                msg = "objective = 'weighted' needs weights, e.g. weights = {cost = 1.0, co2_t = 400.0}"
                raise ValueError(msg)
            for m in self.weights:
                if m not in METRICS:
                    close = difflib.get_close_matches(m, list(METRICS), n=1, cutoff=0.5)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    msg = f"weights: unknown metric {m!r}; {hint}choose from {', '.join(METRICS)}"
                    raise ValueError(msg)
        elif self.weights:
            msg = f"weights only apply to objective = 'weighted' (objective = {self.objective!r}); remove them"
            raise ValueError(msg)
        if self.start and self.end and self.start >= self.end:
            msg = f"start {self.start.isoformat()} is not before end {self.end.isoformat()}"
            raise ValueError(msg)
        return self

    def objective_weights(self) -> dict[str, float]:
        """Return the metric weights the objective sums.

        Returns
        -------
        dict of str to float
            ``{"cost": 1}`` for objective ``cost``, ``{"co2_kg": 1}`` for ``co2``, else a copy
            of ``weights``.
        """
        if self.objective == "cost":
            return {"cost": 1.0}
        if self.objective == "co2":
            return {"co2_kg": 1.0}
        return dict(self.weights)
