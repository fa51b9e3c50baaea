"""The tuning report: one self-contained HTML file (charts inlined as base64 PNG).

Sections: the outcome in plain words (what the best setting saves on validation, why the
oracle bound is lower: :mod:`~pueflow.modes.tune.outcome`), the best settings against the
configured ones, the best trial against the configured settings, the rule baseline and the
perfect-foresight oracle bound on the train and validation periods (cost, CO2, REF, PUE,
peak), the optimisation history, parameter importances and one slice per parameter.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pueflow.modes.tune.objective import feasible
from pueflow.modes.tune.trials import STALE_AFTER_S

#: Metrics of the comparison table and chart: (key, label, format); {cur} is the currency.
SHOWN = (("cost", "cost [{cur}]", "{:,.0f}"), ("co2_t", "CO2 [t]", "{:,.1f}"), ("ref", "REF", "{:.3f}"),
         ("pue", "PUE", "{:.4f}"), ("peak_kw", "peak [kW]", "{:,.0f}"), ("unmet_h", "unmet [h]", "{:.3f}"))
#: Fewest complete trials for Optuna's importance evaluator; below it a rank correlation.
MIN_TRIALS_IMPORTANCE = 5


@dataclass
class Comparison:
    """Scores of one setting (or policy) on one period."""

    name: str
    period: str
    metrics: dict[str, float]
    score: float
    broken: dict[str, float] = field(default_factory=dict)  # constraint -> amount over

    @property
    def verdict(self) -> str:
        """``"yes"`` when no constraint is broken, else ``"no: "`` and each excess."""
        if not self.broken:
            return "yes"
        return "no: " + ", ".join(f"{k} +{v:.3g}" for k, v in self.broken.items())


def num(v: float) -> str:
    """Format a score for a table: whole and thousands-separated from 1e4 up, else 6 digits."""
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:,.6g}"


@dataclass
class ReportData:
    """Everything :func:`render` shows.

    Attributes
    ----------
    title, study, storage, objective, currency : str
        Page title, study name, storage label, objective name, currency code.
    input_desc, periods : str
        What the history was and how it was split (train and validation spans).
    trials : list of optuna.trial.FrozenTrial
        Every trial of the study.
    space : list of ParamSpec
        The ``[[tune.space]]`` entries.
    best : FrozenTrial or None
        The best feasible trial; ``None`` when there is none yet.
    defaults : dict of str to Any
        Configured value per space key.
    comparisons : list of Comparison
        Best, configured, rule and oracle scores per period.
    notes, outcome : list of str
        Warnings shown as notes; plain sentences on savings and the gap to the oracle.
    score_unit : str
        Unit of the score (``EUR``, ``kg CO2``); empty for a weighted objective.
    """

    title: str
    study: str
    storage: str
    objective: str
    currency: str
    input_desc: str
    periods: str
    trials: list[Any]
    space: list[Any]
    best: Any | None
    defaults: dict[str, Any]
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)  # plain sentences: savings, gap to the oracle
    score_unit: str = ""


def importances(trials: list[Any], names: list[str], study: Any = None) -> tuple[dict[str, float], str]:
    """Rank the parameters by importance and say how.

    With ``study`` and at least :data:`MIN_TRIALS_IMPORTANCE` complete trials, Optuna's
    evaluator; else (or if it fails) the absolute Spearman correlation of each parameter
    with the score (categorical values ranked by their text). Fewer than 3 complete trials
    give no ranking.

    Returns
    -------
    importances : dict of str to float
        Importance per parameter name, summing to 1 unless every one is 0 (empty when
        not ranked).
    how : str
        One sentence on the method, for the report.
    """
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    if study is not None and len(done) >= MIN_TRIALS_IMPORTANCE:
        import optuna

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study)
            return dict(imp), "Optuna's default importance evaluator over complete trials"
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            how = f"Optuna's evaluator failed ({exc}); "
    else:
        how = f"fewer than {MIN_TRIALS_IMPORTANCE} complete trials; "
    if len(done) < 3:
        return {}, how + "too few trials to rank parameters"
    y = _rank(np.array([t.value for t in done], dtype=float))
    out = {}
    for n in names:
        x = [t.params.get(n) for t in done]
        codes = {v: i for i, v in enumerate(sorted({repr(v) for v in x}))}
        xv = np.array([v if isinstance(v, int | float) and not isinstance(v, bool) else codes[repr(v)]
                       for v in x], dtype=float)
        rx = _rank(xv)
        s = float(np.std(rx) * np.std(y))
        out[n] = abs(float(np.mean((rx - rx.mean()) * (y - y.mean())) / s)) if s > 0 else 0.0
    tot = sum(out.values())
    if tot > 0:
        out = {k: v / tot for k, v in out.items()}
    return dict(sorted(out.items(), key=lambda kv: -kv[1])), how + "|Spearman rank correlation| with the score, normalised"


def _rank(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    return r


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(w: float, h: float, n: int = 1, cols: int = 1) -> tuple[Any, Any]:
    """Return a figure of ``n`` panels of ``w`` x ``h`` [in] in ``cols`` columns, and its axes (flat)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    return fig, axes.ravel()


def chart_history(trials: list[Any]) -> str:
    """Chart each trial's score by trial number, with the best feasible score so far.

    Infeasible trials are crossed; pruned ones show their last reported (partial) score.

    Returns
    -------
    str
        A ``data:image/png;base64,...`` URI.
    """
    fig, (ax,) = _figure(8, 3.6)
    ok = [t for t in trials if t.state.name == "COMPLETE" and feasible(t)]
    bad = [t for t in trials if t.state.name == "COMPLETE" and not feasible(t)]
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
    if ok:
        ax.scatter([t.number for t in ok], [t.value for t in ok], s=18, label="complete", color="#1f77b4")
        xs = sorted(ok, key=lambda t: t.number)
        best = np.minimum.accumulate([t.value for t in xs])
        ax.step([t.number for t in xs], best, where="post", color="#d62728", label="best so far")
    if bad:
        ax.scatter([t.number for t in bad], [t.value for t in bad], marker="x", color="#ff7f0e", label="infeasible")
    if pruned:
        ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                   s=12, color="#999999", label="pruned (partial period)")
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: num(v)))
    ax.set_xlabel("trial")
    ax.set_ylabel("score (train period)")
    ax.grid(alpha=0.3)
    if ok or bad or pruned:
        ax.legend(fontsize=8)
    return _png(fig)


def chart_importance(imp: dict[str, float]) -> str:
    """Chart parameter importances as horizontal bars (first key on top).

    Returns
    -------
    str
        A ``data:image/png;base64,...`` URI.
    """
    fig, (ax,) = _figure(7, 0.45 * max(len(imp), 2) + 0.8)
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color="#2ca02c")
    ax.set_xlabel("importance")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def chart_slices(trials: list[Any], space: list[Any]) -> str:
    """Score against each setting: complete trials, infeasible ones crossed, colour = trial order."""
    from matplotlib.ticker import FuncFormatter

    done = [t for t in trials if t.state.name == "COMPLETE"]
    fig, axes = _figure(4.2, 3, len(space), min(len(space), 3))
    for ax, p in zip(axes, space, strict=False):
        for ok, marker in ((True, "o"), (False, "x")):
            sel = [t for t in done if feasible(t) == ok and p.key in t.params]
            if not sel:
                continue
            xs = [t.params[p.key] if p.type != "categorical" else str(t.params[p.key]) for t in sel]
            ax.scatter(xs, [t.value for t in sel], c=[t.number for t in sel], cmap="viridis", s=18,
                       marker=marker, vmin=0, vmax=max(len(trials) - 1, 1))
        if p.log:
            ax.set_xscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: num(v)))
        ax.set_title(p.key + (f" [{p.unit}]" if p.unit else ""), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(space):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def short(v: float) -> str:
    """Format an axis tick in about four characters (``12.3k``, ``1.2M``, ``0.25``)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def chart_comparison(rows: list[Comparison], currency: str = "") -> str:
    """Chart one panel per metric, one dot per setting or policy and period (validation hollow).

    Ticks are short (``12.3k``) and few, so large costs do not run into each other.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    labels = [f"{r.name} · {r.period}" for r in rows]
    colors = [{"configured": "#7f7f7f", "best": "#1f77b4", "rule": "#ff7f0e",
               "oracle": "#2ca02c"}.get(r.name, "#9467bd") for r in rows]
    shown = SHOWN[:5]
    fig, axes = _figure(2.3, 0.22 * len(rows) + 0.8, len(shown), len(shown))
    y = np.arange(len(rows))
    for j, (key, label, _) in enumerate(shown):
        ax = axes[j]
        x = [r.metrics.get(key, math.nan) for r in rows]
        face = [c if r.period == "train" else "none" for c, r in zip(colors, rows, strict=True)]
        ax.scatter(x, y, s=30, zorder=3, facecolors=face, edgecolors=colors)
        ax.set_yticks(y, labels if j == 0 else [""] * len(rows), fontsize=7)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v)))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(label.format(cur=currency), fontsize=8)
    fig.tight_layout(w_pad=1.2)
    return _png(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v))


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    tr = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{tr}</table>"


def _why_failed(t: Any) -> str:
    a = t.user_attrs
    if a.get("error") or a.get("duplicate"):
        return str(a.get("error") or a.get("duplicate"))
    if a.get("interrupted"):
        return "interrupted; re-run"
    return f"its worker stopped sending heartbeats for {STALE_AFTER_S} s; re-run"


def render(d: ReportData, study: Any = None) -> str:
    """Return the report as one self-contained HTML page (charts inlined).

    Parameters
    ----------
    d : ReportData
        What to show.
    study : optuna.Study, optional
        Lets Optuna's importance evaluator run (:func:`importances`).

    Returns
    -------
    str
        The HTML text; every value from the study or the config is HTML-escaped.
    """
    e = html.escape
    states: dict[str, int] = {}
    for t in d.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    names = [p.key for p in d.space]
    parts = [f"<h1>{e(d.title)}</h1>",
             f"<p>study <b>{e(d.study)}</b> in <code>{e(d.storage)}</code> · objective <b>{e(d.objective)}</b> "
             f"· {len(d.trials)} trials ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))})</p>",
             f"<p>history: {e(d.input_desc)} · {e(d.periods)}</p>"]
    if d.outcome:
        parts += ["<h2>Outcome</h2>", *(f"<p class=outcome>{e(line)}</p>" for line in d.outcome)]
    parts += [f"<p class=note>{e(n)}</p>" for n in d.notes]
    if d.best is not None:
        shown = {p.key: p.value(d.best.params[p.key]) for p in d.space if p.key in d.best.params}
        rows = [[e(k), _fmt(shown.get(k)), _fmt(d.defaults.get(k))] for k in names]
        unit = f" {e(d.score_unit)}" if d.score_unit else ""
        parts += [f"<h2>Best settings: trial #{d.best.number}, train score {num(d.best.value)}{unit}</h2>",
                  _table(["setting", "best", "configured"], rows)]
    else:
        parts.append("<h2>No feasible trial yet</h2><p>Every finished trial broke a constraint or failed; "
                     "widen the search space or relax the constraints.</p>")
    if d.comparisons:
        head = ["setting / policy", "period", "score", "feasible"] + [e(lbl.format(cur=d.currency)) for _, lbl, _ in SHOWN]
        rows = [[e(c.name), e(c.period), num(c.score), e(c.verdict)]
                + [fmt.format(c.metrics.get(k, math.nan)) for k, _, fmt in SHOWN] for c in d.comparisons]
        parts += ["<h2>Best trial against the configured settings, the rule baseline and the oracle bound</h2>",
                  "<p>Costs at the configured prices in " + e(d.currency) + "; the oracle knows the whole period "
                  "in advance (a lower bound no real controller reaches).</p>",
                  _table(head, rows), f"<img src='{chart_comparison(d.comparisons, d.currency)}'>"]
    if d.trials:
        parts += ["<h2>Optimisation history</h2>", f"<img src='{chart_history(d.trials)}'>"]
        imp, how = importances(d.trials, names, study)
        parts.append("<h2>Parameter importances</h2>")
        parts.append(f"<p>{e(how)}</p>")
        if imp:
            parts.append(f"<img src='{chart_importance(imp)}'>")
        if any(t.state.name == "COMPLETE" for t in d.trials):
            parts += ["<h2>Score against each setting</h2><p>complete trials; x = infeasible; colour = "
                      "trial number (dark early, light late)</p>", f"<img src='{chart_slices(d.trials, d.space)}'>"]
        failed = [t for t in d.trials if t.state.name == "FAIL"]
        if failed:
            parts.append("<h2>Failed trials</h2>")
            parts.append(_table(["trial", "reason"], [[str(t.number), e(_why_failed(t))] for t in failed[:50]]))
    css = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
           "font-size:13px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
           "img{max-width:100%}.note{color:#8a5a00}.outcome{font-size:15px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(d.title)}</title>"
            f"<style>{css}</style></head><body>{''.join(parts)}</body></html>")
