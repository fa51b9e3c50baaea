"""What a new user reads: check-config and tune refuse the same [tune], the report's plain lines, -q."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import optuna
import pytest

from pueflow.cli import main
from pueflow.config.load import parse_config
from pueflow.config.tune import TuneSpec
from pueflow.exceptions import ConfigError
from pueflow.modes.tune.best_config import dumps
from pueflow.modes.tune.objective import resolve_space
from pueflow.modes.tune.outcome import COST_PARTS
from pueflow.modes.tune.run import run_tune
from tests.unit.modes.test_tune import HORIZON, history, tiny_cfg, tiny_data  # noqa: F401 - the fixture is used by name

BAD_SPACE = [{"key": "cooling.chilled.supply_max_c", "low": 30.0, "high": 40.0},  # the site has no cooling loop
             {"key": "battery.soc_min_pct", "low": 5.0, "high": 99.0}]  # above the site's soc_max_pct


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_check_config_refuses_what_tune_refuses_with_the_same_message(history, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "bad.toml"
    path.write_text(dumps(tiny_data({"space": BAD_SPACE})))
    # what tune's own resolution of the space says, from a spec that never went through config
    cfg = tiny_cfg()
    with pytest.raises(ConfigError) as ei:
        resolve_space(cfg.sites[0], TuneSpec(space=BAD_SPACE), str(path))
    want = ei.value.problems
    assert [k for k, _, _ in want] == ["tune.space[0].key", "tune.space[1].high"]
    assert "no item named 'chilled'" in want[0][2]
    assert "soc_max_pct" in want[1][2]
    with pytest.raises(ConfigError) as ei:
        parse_config(tiny_data({"space": BAD_SPACE}), str(path))
    assert ei.value.problems == want

    assert main(["check-config", str(path)]) == 2
    checked = _flat(capsys.readouterr().out)
    assert main(["tune", "--config", str(path), "--input", str(history), "--trials", "1",
                 "--out", str(tmp_path / "out"), "-q"]) == 2
    tuned = _flat(capsys.readouterr().err)
    for key, _, fix in want:
        assert key in checked
        assert key in tuned
        assert _flat(fix) in checked
        assert _flat(fix) in tuned
    assert not (tmp_path / "out" / "tune.db").exists()  # refused before any study


def _text(page: str) -> str:
    """The visible text of an HTML page (tags and inline images left out)."""
    return _flat(html.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture(scope="module")
def tuned(history, tmp_path_factory):  # noqa: F811
    """A tuned study of the tiny site with a demand charge on its billed peak."""
    data = tiny_data({"space": [HORIZON]})
    data["sites"][0]["dispatch"]["tariff"]["demand_charge_per_kw"] = 40.0
    out = tmp_path_factory.mktemp("tuned")
    res = run_tune(parse_config(data), history, trials=3, out=out, seed=1, progress=False)
    return res, json.loads((out / "best.json").read_text())


def test_the_report_says_what_the_best_setting_saves_in_the_currency(tuned):
    res, best = tuned
    page = res.report_path.read_text()
    text = _text(page)
    scores = {(s["name"], s["period"]): s for s in best["scores"]}
    conf, top = scores[("configured", "validation")]["cost"], scores[("best", "validation")]["cost"]
    assert top < conf  # the 24 h horizon sees the evening peak: the known better side
    saved = conf - top
    assert f"saves {saved:,.0f} MAD ({saved / conf * 100:.1f} %) on validation" in text
    assert "cost [MAD]" in text
    assert res.best_params == {"horizon": "24h"}


def test_the_report_explains_the_gap_to_the_oracle_part_by_part(tuned):
    res, best = tuned
    text = _text(res.report_path.read_text())
    scores = {(s["name"], s["period"]): s for s in best["scores"]}
    b, o = scores[("best", "validation")], scores[("oracle", "validation")]
    # the parts of the realised cost, recomputed from the raw metrics: CO2 at 100 per t, no DR, no export
    for m in (b, o):
        assert m["carbon_cost"] == pytest.approx(m["co2_t"] * 100.0)
        assert m["other_cost"] == pytest.approx(0.0, abs=1e-6)
        assert sum(m[k] for k in COST_PARTS) == pytest.approx(m["cost"], rel=1e-9)
    diffs = {k: b[k] - o[k] for k in COST_PARTS}
    largest = max(diffs, key=lambda k: abs(diffs[k]))
    gap = b["cost"] - o["cost"]
    assert gap > 0
    assert f"The oracle bound costs {gap:,.0f} MAD" in text
    assert f"Most of the gap is {COST_PARTS[largest]}: {diffs[largest]:,.0f} MAD" in text
    if largest == "demand_cost":
        assert f"billed peak {b['peak_kw']:,.0f} kW against the oracle's {o['peak_kw']:,.0f} kW" in text


def test_the_report_names_no_absolute_path(tuned, history):  # noqa: F811
    res, _ = tuned
    page = res.report_path.read_text()
    for path in (res.out.resolve(), Path(history).resolve().parent, Path.home()):
        assert str(path) not in page
    text = _text(re.sub(r"src='data:[^']*'", "", page))
    assert not re.search(r"(?:^|[\s(:])/[\w.-]+/", text), "an absolute path is in the report"
    assert "tune.db in the output folder" in text
    assert Path(history).name in text


def test_quiet_prints_one_line_and_no_optuna_log(history, tmp_path, capfd):  # noqa: F811
    path = tmp_path / "tiny.toml"
    path.write_text(dumps(tiny_data({"space": [HORIZON], "validation_days": 0})))
    optuna.logging.set_verbosity(optuna.logging.INFO)  # as in a fresh process
    code = main(["tune", "--config", str(path), "--input", str(history), "--trials", "1",
                 "--out", str(tmp_path / "out"), "-q"])
    out, err = capfd.readouterr()
    assert code == 0
    assert "A new study created" not in out + err
    assert "[I " not in out + err
    assert "Warning" not in err
    assert len(out.strip().splitlines()) == 1
