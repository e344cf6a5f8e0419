"""Write a synthetic device trace, in any format `devices.traces` reads:

    python -m devices.make_trace OUT --devices N --seed S --format csv|json|fedscale [--capacity OUT2]

Availability: each device alternates online and offline spells of exponential length (means
600 s and 300 s) over one day, 86,400 s, and the pattern repeats daily; it starts online with
the stationary probability 600/900. Times are whole seconds. Device d draws from
`default_rng(SeedSequence([seed, d]))`, so a device's trace does not depend on how many others
there are. Capacity (`--capacity`): flops_per_s = 1e9 x LogNormal(0, 0.5) and bandwidth_bps =
1e6 x LogNormal(0, 0.7), 3 significant digits, drawn from `SeedSequence([seed, d, 1])`;
FedScale's format gets communication = bandwidth_bps / 1000 (kbps) and computation = the ms per
sample of a 50 MFLOP inference at that rate.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

from .traces import load_availability, load_capacity

FORMATS = ("csv", "json", "fedscale")
REF_FLOPS_PER_SAMPLE = 50e6  # FedScale's computation (ms/sample) is that of a 50 MFLOP inference


def device_spans(seed: int, device: int, mean_on: float, mean_off: float, period: float) -> list[tuple[int, int]]:
    """Online intervals [start, end) of one device, whole seconds in [0, period], sorted and
    neither overlapping nor touching."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, device]))
    online = bool(rng.random() < mean_on / (mean_on + mean_off))
    t, spans = 0.0, []
    while t < period:
        dur = float(rng.exponential(mean_on if online else mean_off))
        if online:
            start, end = round(t), round(min(t + dur, period))
            if spans and start <= spans[-1][1]:  # a gap that rounds away joins two spells
                spans[-1] = (spans[-1][0], end)
            elif end > start:
                spans.append((start, end))
        t, online = t + dur, not online
    return spans


def device_capacity(seed: int, device: int) -> tuple[float, float]:
    """(flops_per_s, bandwidth_bps) of one device, 3 significant digits."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, device, 1]))
    flops, bw = 1e9 * rng.lognormal(0.0, 0.5), 1e6 * rng.lognormal(0.0, 0.7)
    return float(f"{flops:.3g}"), float(f"{bw:.3g}")


def write_availability(out: Path, spans: list[list[tuple[int, int]]], period: float, fmt: str) -> None:
    """Write per-device spans (device = list index) as `fmt`: csv, json or fedscale."""
    p = int(period) if float(period).is_integer() else float(period)
    if fmt == "csv":
        rows = [f"{d},{s},{e},{p}" for d, sp in enumerate(spans) for s, e in sp]
        out.write_text("\n".join(["device,start_s,end_s,period_s", *rows]) + "\n")
    elif fmt == "json":
        devices = {str(d): [list(x) for x in sp] for d, sp in enumerate(spans)}
        out.write_text(json.dumps({"period_s": p, "devices": devices}, separators=(",", ":")) + "\n")
    else:  # FedScale's client_behave_trace: 1-based client ids
        behave = {
            d + 1: {"active": [s for s, _ in sp], "inactive": [e for _, e in sp], "finish_time": p}
            for d, sp in enumerate(spans)
        }
        out.write_bytes(pickle.dumps(behave, protocol=4))


def write_capacity(out: Path, caps: list[tuple[float, float]], fmt: str) -> None:
    """Write per-device (flops_per_s, bandwidth_bps) (device = list index) as `fmt`."""
    if fmt == "csv":
        rows = [f"{d},{f:.6g},{b:.6g}" for d, (f, b) in enumerate(caps)]
        out.write_text("\n".join(["device,flops_per_s,bandwidth_bps", *rows]) + "\n")
    elif fmt == "json":
        devices = {str(d): {"flops_per_s": f, "bandwidth_bps": b} for d, (f, b) in enumerate(caps)}
        out.write_text(json.dumps({"devices": devices}, separators=(",", ":")) + "\n")
    else:  # FedScale's client_device_capacity: ms per sample, kbps
        fedscale = {
            d + 1: {"computation": round(1000.0 * REF_FLOPS_PER_SAMPLE / f, 3), "communication": b / 1000.0}
            for d, (f, b) in enumerate(caps)
        }
        out.write_bytes(pickle.dumps(fedscale, protocol=4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devices.make_trace", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="availability trace to write")
    parser.add_argument("--devices", type=int, required=True, help="number of devices (ids 0..N-1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--capacity", type=Path, help="also write a capacity trace here")
    parser.add_argument("--mean-on", type=float, default=600.0, help="mean online spell (s)")
    parser.add_argument("--mean-off", type=float, default=300.0, help="mean offline spell (s)")
    parser.add_argument("--period", type=float, default=86400.0, help="length of the repeating pattern (s)")
    a = parser.parse_args(argv)
    if a.devices < 1 or a.seed < 0 or min(a.mean_on, a.mean_off, a.period) <= 0:
        parser.error("--devices must be >= 1, --seed >= 0, and the means and period > 0")
    spans = [device_spans(a.seed, d, a.mean_on, a.mean_off, a.period) for d in range(a.devices)]
    write_availability(a.out, spans, a.period, a.format)
    trace = load_availability(a.out)  # what we wrote must read back
    online = float(np.mean([trace.online_mask(t, a.devices).mean() for t in np.arange(0, a.period, 60.0)]))
    print(f"{a.out}: {a.devices} devices, {trace.starts.shape[0]} online intervals, online {online:.0%} of the time")
    if a.capacity is not None:
        write_capacity(a.capacity, [device_capacity(a.seed, d) for d in range(a.devices)], a.format)
        print(f"{a.capacity}: {load_capacity(a.capacity).devices.shape[0]} devices")


if __name__ == "__main__":
    main()
