"""Wire decoders alone, in-process: Telegraf JSON batch form vs line protocol.

Telegraf's batch format (``{"metrics": [...]}``, 100 metrics a message, 10 fields a
metric) and the same readings as line protocol (100 lines a message). Rates are samples
(field values) per second, the best of ``--repeat`` interleaved runs, with their ratio to a
bare ``orjson.loads`` loop over the same JSON payloads measured in the same run::

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
    n = args.messages * 100 * len(POINTS)
    fns = {"orjson.loads loop": lambda: [orjson.loads(p) for p in js],
           "decode_json": lambda: decode_json(js, reg, "s"),
           "decode_line": lambda: decode_line(lp, reg)}
    for fn in fns.values():  # compile kernels, fill the name caches
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(args.repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    base = best["orjson.loads loop"]
    print(f"{n:,} samples ({args.messages} messages x 100 metrics x {len(POINTS)} fields)")
    for name, dt in best.items():
        print(f"{name:18s} {n / dt / 1e6:6.2f} M samples/s   {base / dt:5.2f} x orjson loop")
    print(f"line protocol / JSON: {best['decode_json'] / best['decode_line']:.2f}")


if __name__ == "__main__":
    main()
