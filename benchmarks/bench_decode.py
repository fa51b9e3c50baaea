"""Wire decoders alone, in-process: Telegraf JSON (batch and one metric a message) vs line protocol.

Telegraf's batch format (``{"metrics": [...]}``, 100 metrics a message, 10 fields a
metric), the same metrics one a message, and the same readings as line protocol (100 lines
a message). Rates are samples (field values) per CPU-second, the best of ``--repeat``
interleaved runs, with their ratio to a bare ``orjson.loads`` loop over the same JSON
payloads measured in the same run. Targets (issue 12): batch form >= 2 M samples/s; line
protocol within 10 % of JSON::

    .venv/bin/python benchmarks/bench_decode.py [--messages 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import orjson

from pueflow.config.load import load_config
from pueflow.connectors.wire import decode_json, decode_line
from pueflow.schema.registry import Registry

CONFIG = Path(__file__).resolve().parents[1] / "config" / "tetouan-7.5mw.toml"
POINTS = ["power_kw", "energy_kwh", "supply_temp_c", "return_temp_c", "flow_lpm",
          "pump_power_kw", "voltage_v", "current_a", "pf", "freq_hz"]
T0 = 1_714_521_600  # 2024-05-01T00:00:00Z [s]


def payloads(n_msg: int, per_msg: int = 100, n_dev: int = 1000) -> tuple[list[bytes], list[bytes]]:
    """(JSON batch messages, line-protocol messages) holding the same readings."""
    rng = np.random.default_rng(0)
    js, lp = [], []
    for m in range(n_msg):
        metrics, lines = [], []
        for k in range(per_msg):
            dev = f"pdu-{(m * per_msg + k) % n_dev:04d}"
            fields = {p: round(float(v), 3) for p, v in zip(POINTS, rng.random(len(POINTS)) * 100,
                                                           strict=True)}
            t = T0 + 10 * ((m * per_msg + k) // n_dev)
            metrics.append({"fields": fields, "name": "pdu",
                            "tags": {"device": dev, "site": "tetouan-1"}, "timestamp": t})
            lines.append(f"pdu,device={dev},site=tetouan-1 "
                         + ",".join(f"{p}={v}" for p, v in fields.items()) + f" {t * 10**9}")
        js.append(orjson.dumps({"metrics": metrics}))
        lp.append("\n".join(lines).encode())
    return js, lp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    reg = Registry(load_config(CONFIG))
    js, lp = payloads(args.messages)
    one = [orjson.dumps(m) for p in js for m in orjson.loads(p)["metrics"]]
    n = args.messages * 100 * len(POINTS)
    fns = {"orjson.loads loop": lambda: [orjson.loads(p) for p in js],
           "decode_json": lambda: decode_json(js, reg, "s"),
           "decode_line": lambda: decode_line(lp, reg),
           "orjson loop, 1/msg": lambda: [orjson.loads(p) for p in one],
           "decode_json, 1/msg": lambda: decode_json(one, reg, "s")}
    for fn in fns.values():  # compile kernels, fill the name caches
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(args.repeat):
        for name, fn in fns.items():
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    base = best["orjson.loads loop"]
    print(f"{n:,} samples ({args.messages} messages x 100 metrics x {len(POINTS)} fields)")
    for name, dt in best.items():
        ref = best["orjson loop, 1/msg"] if "1/msg" in name else base
        print(f"{name:20s} {n / dt / 1e6:6.2f} M samples/s   {ref / dt:5.2f} x its orjson loop")
    print(f"line protocol / JSON (batch): {best['decode_json'] / best['decode_line']:.2f} "
          "(target >= 0.90)")


if __name__ == "__main__":
    main()
