"""``pueflow tune``: search dispatch settings over history with Optuna.

:func:`run_tune` reads ``[tune]`` (:class:`~pueflow.config.tune.TuneSpec`), turns
``input`` into the site's history (:mod:`~pueflow.modes.tune.history`), splits it into
train and validation periods, and runs an Optuna study whose trials are closed-loop
backtests of the train period (:mod:`~pueflow.modes.tune.objective`) in ``jobs``
worker processes sharing one storage (:mod:`~pueflow.modes.tune.study`). It then
scores the best trial and the configured settings on the validation period, runs the rule
baseline and the oracle bound, and writes to ``out``:

* ``best-config.toml`` — the input config with the best settings in ``[sites.dispatch]``;
* ``report.html`` — self-contained report (:mod:`~pueflow.modes.tune.report`);
* ``best.json`` — best parameters, overrides and every score; ``trials.csv`` — all trials;
* ``tune.db`` — the study, unless ``storage`` points elsewhere.

Re-running with the same study name resumes it: ``trials`` is the total the study should
hold, not the number to add (:mod:`~pueflow.modes.tune.trials` says which trials
count; a trial whose worker died or was interrupted is re-run). Local invocations on one
storage file take turns (a lock next to it) to create the study and queue the configured
settings as a trial, once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pueflow.config.dispatch import duration_s
from pueflow.config.tune_check import tune_site
from pueflow.exceptions import ConfigError, PueflowError
from pueflow.modes.tune.best_config import tuned_config_text
from pueflow.modes.tune.history import load_history, split_periods
from pueflow.modes.tune.objective import (
    Evaluator,
    default_value,
    feasible,
    limits_only,
    resolve_space,
)
from pueflow.modes.tune.outcome import oracle_gap_line, savings_line, score_unit, storage_label
from pueflow.modes.tune.report import Comparison, ReportData, num, render
from pueflow.modes.tune.storage import lock_path, redact, storage_file, storage_url
from pueflow.modes.tune.study import (
    FileLock,
    WorkerJob,
    create_or_load,
    default_study_name,
    spawn_workers,
    wait_workers,
    work,
)
from pueflow.modes.tune.trials import count_trials, counted, fail_stale, queue_configured
from pueflow.optimizers.assets import site_model


@dataclass
class TuneResult:
    """What a tuning run left: the study, the best trial and its validation check."""

    study: str
    storage: str
    trials: int  # towards the total: every trial but those an interrupt failed (they are re-run)
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_overrides: dict[str, Any]
    validation: dict[str, float] = field(default_factory=dict)  # "best"/"configured" -> score
    out: Path = Path()
    config_path: Path | None = None
    report_path: Path | None = None
    seconds: float = 0.0


def run_tune(cfg: Any, input: str | Path, *, trials: int, jobs: int = 1, storage: str | None = None,  # noqa: A002
             study: str | None = None, out: str | Path = "pueflow-tune", seed: int | None = None,
             progress: bool = True, report: bool = True) -> TuneResult:
    """Tune ``cfg``'s ``[tune]`` site over the history in ``input``; see the module doc.

    ``report=False`` only runs trials (a worker joining a shared study from another machine):
    no validation runs, no files but the study; the result still names the best trial.
    """
    t0 = time.perf_counter()
    source = cfg.source or "<config>"
    spec = cfg.tune
    if spec is None:
        raise ConfigError(source, [("tune", None, "add a [tune] section with at least one [[tune.space]] "
                                                  "entry (see config/tetouan-7.5mw.toml)")])
    if trials < 1 or jobs < 1:
        msg = f"--trials {trials} and --jobs {jobs} must both be at least 1"
        raise PueflowError(msg)
    site, problems = tune_site(cfg)
    if site is None:
        raise ConfigError(source, problems)
    keys = resolve_space(site, spec, source)
    model = site_model(site)
    hist = load_history(cfg, site, model, input, progress=progress)
    periods = split_periods(hist.frame, spec, model, source)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    url = storage_url(storage, outp)
    name = study or default_study_name(spec, site.id)
    lock = lock_path(url, outp)
    defaults = {p.key: _domain_value(p, default_value(site, keys[p.key])) for p in spec.space}
    with FileLock(lock):  # local invocations started together: one creates, one queues
        st = create_or_load(url, name, spec, site.id, source)
        if all(v is not None for v in defaults.values()):
            queue_configured(st, defaults)
    ev = Evaluator(site, spec, keys)
    job = WorkerJob(site, spec, keys, periods.train, url, name, trials, seed, 0)
    _optimise(st, job, jobs, progress, outp, lock)
    if report:
        configured = {p.key: default_value(site, keys[p.key]) for p in spec.space}
        res = _finish(cfg, st, ev, periods, hist.source, Path(input).name, configured, url, outp, progress)
    else:
        res = _result(st, url, outp)
    res.seconds = time.perf_counter() - t0
    return res


def _domain_value(p: Any, v: Any) -> Any:
    """Return the configured value ``v`` in ``p``'s domain, or ``None`` if outside it.

    A duration becomes a number in ``p.unit``; an int entry needs a whole number; a bool
    is never a number here.
    """
    if v is None:
        return None
    if p.type == "categorical":
        return v if v in p.choices else None
    if p.unit:
        v = duration_s(str(v)) / {"s": 1, "m": 60, "h": 3600, "d": 86400}[p.unit]
    if isinstance(v, bool) or not isinstance(v, int | float) or not p.low <= v <= p.high:
        return None
    if p.type == "int":
        return int(v) if float(v).is_integer() else None
    return float(v)


def _optimise(st: Any, job: WorkerJob, jobs: int, progress: bool, outp: Path, lock: Path) -> None:
    """Run trials until the study holds ``job.total``, in-process or in ``jobs`` processes."""
    bar = _Bar(st, job.total) if progress else None
    poll = bar.update if bar else (lambda *a: None)
    try:
        with FileLock(lock):
            fail_stale(st)
            if count_trials(st) >= job.total:
                return
        if jobs == 1:
            work(job, FileLock(lock), on_trial=lambda _t: poll())
            return
        procs = spawn_workers(job, jobs, lock, outp)
        try:
            wait_workers(procs, poll)
        finally:
            for f in outp.glob(f".tune-job-{os.getpid()}.pkl"):
                f.unlink(missing_ok=True)
    finally:
        if bar:
            bar.stop()


class _Bar:
    """A rich progress bar over the study's trials, with the best feasible score so far."""

    def __init__(self, st: Any, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.st, self.total = st, total
        self.p = Progress(TextColumn("tune [bold]{task.fields[study]}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("best {task.fields[best]}  {task.fields[states]}"), TimeElapsedColumn())
        self.task = self.p.add_task("tune", total=total, study=st.study_name, best="-", states="")
        self.p.start()
        self.update()

    def update(self) -> None:
        trials = self.st.get_trials(deepcopy=False)
        done = [t for t in counted(trials) if t.state.is_finished()]
        ok = [t.value for t in done if t.state.name == "COMPLETE" and feasible(t)]
        n = {s: sum(t.state.name == s for t in trials) for s in ("PRUNED", "FAIL", "RUNNING")}
        states = ", ".join(f"{v} {k.lower()}" for k, v in n.items() if v)
        self.p.update(self.task, completed=min(len(done), self.total),
                      best=num(min(ok)) if ok else "-", states=states)

    def stop(self) -> None:
        self.update()
        self.p.stop()


def best_trial(trials: list[Any]) -> Any | None:
    """Return the feasible complete trial with the lowest score (``None`` if there is none).

    Ties go to the earlier trial (lower number).
    """
    ok = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and feasible(t)]
    return min(ok, key=lambda t: (t.value, t.number)) if ok else None


def _result(st: Any, url: str, outp: Path) -> TuneResult:
    trials = st.get_trials(deepcopy=False)
    best = best_trial(trials)
    res = TuneResult(st.study_name, redact(url), count_trials(st), None, None, {}, {}, out=outp)
    if best is not None:
        res.best_number, res.best_value, res.best_params = best.number, best.value, dict(best.params)
        res.best_overrides = dict(best.user_attrs.get("overrides", {}))
    return res


def _finish(cfg: Any, st: Any, ev: Evaluator, periods: Any, source: str, input_desc: str,
            defaults: dict[str, Any], url: str, outp: Path, progress: bool) -> TuneResult:
    trials = st.get_trials(deepcopy=False)
    best = best_trial(trials)
    spec, site = ev.spec, ev.site
    comps: list[Comparison] = []
    notes: list[str] = []
    res = _result(st, url, outp)

    def add(name: str, period: str, hist: pl.DataFrame | None, ov: dict[str, Any] | None,
            policy: str | None = None, metrics: dict[str, float] | None = None) -> None:
        if metrics is None:
            if hist is None:
                return
            metrics = ev.run(hist, ov, policy)[1]
        broken = {k: v for k, v in ev.violations(metrics).items() if v > 0}
        comps.append(Comparison(name, period, metrics, ev.score(metrics), broken))

    conf = next((t for t in trials if t.user_attrs.get("configured") and t.state.name == "COMPLETE"), None)
    add("configured", "train", periods.train, None, metrics=conf.user_attrs["metrics"] if conf else None)
    add("configured", "validation", periods.validation, None)
    if best is not None:
        ov = res.best_overrides
        add("best", "train", None, ov, metrics=best.user_attrs["metrics"])
        add("best", "validation", periods.validation, ov)
    else:
        ov = {}
    for period, hist in (("train", periods.train), ("validation", periods.validation)):
        add("rule", period, hist, None, "rule")
        add("oracle", period, hist, limits_only(ov), "oracle")
    order = ("configured", "best", "rule", "oracle")
    comps.sort(key=lambda c: (c.period != "train", order.index(c.name)))
    val = {c.name: c.score for c in comps if c.period == "validation" and c.name in ("best", "configured")}
    res.validation = val
    if "best" in val and val["best"] > val["configured"] + 1e-9 * abs(val["configured"]):
        notes.append(f"On the validation period the best train setting scores {num(val['best'])}, worse than "
                     f"the configured {num(val['configured'])}: the gain may not carry over (a longer train "
                     f"period, or fewer tuned settings, helps).")
    if best is not None:
        rounded = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in ov.items()}
        note = (f"Tuned by pueflow tune: study {st.study_name!r}, trial #{best.number} of {len(trials)}, "
                f"train score {num(best.value)} ({_objective_text(spec)}); values rounded to 6 digits:\n"
                + "\n".join(f"  {k} = {v!r}" for k, v in rounded.items()))
        res.config_path = outp / "best-config.toml"
        res.config_path.write_text(tuned_config_text(cfg, site.id, rounded, note), encoding="utf-8")
    currency = site.dispatch.tariff.currency
    outcome = [line for line in (savings_line(comps, currency, spec.objective), oracle_gap_line(comps, currency))
               if line]
    data = ReportData(
        title=f"pueflow tune · {site.id}", study=st.study_name,
        storage=storage_label(redact(url), storage_file(url), outp),
        objective=_objective_text(spec), currency=currency, score_unit=score_unit(spec.objective, currency),
        input_desc=f"{input_desc} ({source})",
        periods=(f"train {periods.train_days:.2f} d, validation {periods.validation_days:.2f} d from "
                 f"{periods.split.isoformat()}, {periods.warmup_days:g} d warm-up each"),
        trials=trials, space=spec.space, best=best, defaults=defaults, comparisons=comps, notes=notes,
        outcome=outcome)
    res.report_path = outp / "report.html"
    res.report_path.write_text(render(data, st), encoding="utf-8")
    _write_tables(outp, trials, res, comps)
    if progress:
        _print_summary(res, comps, outcome, notes, currency)
    return res


def _objective_text(spec: Any) -> str:
    parts = [spec.objective if spec.objective != "weighted" else
             " + ".join(f"{w:g} x {k}" for k, w in spec.objective_weights().items())]
    parts.append(f"unmet work <= {spec.max_unmet_h:g} h")
    if spec.max_peak_kw is not None:
        parts.append(f"billed peak <= {spec.max_peak_kw:g} kW")
    if spec.max_chip_violations is not None:
        parts.append(f"chip-limit steps <= {spec.max_chip_violations}")
    return "; ".join(parts)


def _write_tables(outp: Path, trials: list[Any], res: TuneResult, comps: list[Any]) -> None:
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
             "feasible": feasible(t) if t.state.name == "COMPLETE" else None,
             "seconds": t.duration.total_seconds() if t.duration else None,
             **{f"param:{k}": str(v) for k, v in t.params.items()},
             "note": t.user_attrs.get("stopped") or t.user_attrs.get("error") or ""} for t in trials]
    if rows:
        pl.DataFrame(rows, infer_schema_length=None).write_csv(outp / "trials.csv")
    best = {"study": res.study, "storage": res.storage, "trials": res.trials, "best_trial": res.best_number,
            "best_value": res.best_value, "params": res.best_params, "overrides": res.best_overrides,
            "validation": res.validation,
            "scores": [{"name": c.name, "period": c.period, "score": c.score, **c.metrics} for c in comps]}
    (outp / "best.json").write_text(json.dumps(best, indent=2, default=str), encoding="utf-8")


def _print_summary(res: TuneResult, comps: list[Any], outcome: list[str], notes: list[str], currency: str) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    tab = Table(title=f"study {res.study}: {res.trials} trials")
    for col in ("setting / policy", "period", "score", "feasible", f"cost [{currency}]", "CO2 [t]", "peak [kW]"):
        tab.add_column(col, justify="right")
    for c in comps:
        m = c.metrics
        tab.add_row(c.name, c.period, num(c.score), "no: " + ", ".join(c.broken) if c.broken else "yes",
                    f"{m['cost']:,.0f}", f"{m['co2_t']:,.1f}",
                    f"{m['peak_kw']:,.0f}")
    con.print(tab)
    if res.best_number is None:
        con.print("[red]no feasible trial[/red]: widen the search space or relax the constraints")
    else:
        con.print(f"best trial #{res.best_number}: " + ", ".join(f"{k} = {v!r}" for k, v in res.best_overrides.items()))
    for line in outcome:
        con.print(line, markup=False)
    for n in notes:
        con.print(f"[yellow]{n}[/yellow]")
    con.print(f"-> {res.report_path}" + (f", {res.config_path}" if res.config_path else ""))
