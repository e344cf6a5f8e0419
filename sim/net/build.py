"""The network a config describes: its checks (`validate`) and its objects (`build_network`).

`fleet.*` says when devices are online (a renewal process, or a trace), their batteries, the
server's profile and which devices the grid offers; `channel.*` the medium and how each
device's links differ. Trace files are read here, once, through the restricted loaders of
`devices.traces` (plain data only, never code).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import simpy

from channels import Link
from channels.radio import MODULATIONS, LinkSpread, device_link
from devices import CATALOGUE, DeviceProfile, Fleet
from sim.config import Config, ConfigError, check, positive
from sim.net.availability import AlwaysOnline, Renewal, TraceAvailability
from sim.net.energy import EnergyLedger
from sim.net.links import build_link
from sim.net.medium import Medium
from sim.net.network import Network, Server, Timeline
from sim.seeding import stream, stream_seed

__all__ = ["build_network", "link_spread", "plain_network", "validate", "with_capacity"]

MAX_CELLS = 100_000


def link_spread(cfg: Config) -> LinkSpread:
    c = cfg.channel
    try:
        return LinkSpread(
            kind=c.links,
            spread=c.spread,
            radius_m=c.radius_m,
            exponent=c.exponent,
            ref_loss_db=c.ref_loss_db,
            tx_power_dbm=c.tx_power_dbm,
            noise_dbm=c.noise_dbm,
            modulation=c.modulation,
            up_scale=c.up_scale,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


@functools.lru_cache(maxsize=8)
def _trace(kind: str, path: str):
    from devices import traces

    load = traces.load_availability if kind == "availability" else traces.load_capacity
    where = Path(path).expanduser()
    try:
        return load(where)
    except ValueError as e:
        problem = str(e).removeprefix(f"{where}: ")  # the setting's value already names the file
        raise ConfigError(f"fleet.{kind}_trace={path!r}: {problem}") from None


def _check_trace(kind: str, path: str | None, num_devices: int):
    if path is None:
        return None
    from devices import traces

    trace = _trace(kind, str(path))
    try:
        traces.check_devices(trace, num_devices)
    except ValueError as e:
        raise ConfigError(f"fleet.{kind}_trace={path!r}: {e}") from None
    return trace


def validate(cfg: Config, num_devices: int | None = None) -> None:
    """The one-line ConfigError of a bad network setting; trace files are read and checked
    against the fleet's `num_devices` (when known)."""
    f, c = cfg.fleet, cfg.channel
    check(
        isinstance(f.availability, (int, float)) and 0.0 < f.availability <= 1.0,
        "fleet.availability",
        f.availability,
        "allowed range is (0, 1]",
    )
    positive("fleet.online_s", f.online_s)
    check(
        f.battery_j is None or hasattr(f.battery_j, "items"),
        "fleet.battery_j",
        f.battery_j,
        "give joules per profile, e.g. '{rpi3_400mhz: 36000}', or null",
    )
    for name, joules in dict(f.battery_j or {}).items():
        check(
            name in CATALOGUE,
            f"fleet.battery_j.{name}",
            joules,
            f"unknown profile; allowed: {', '.join(sorted(CATALOGUE))}",
        )
        positive(f"fleet.battery_j.{name}", joules)
    check(
        f.server is None or f.server in CATALOGUE,
        "fleet.server",
        f.server,
        f"allowed: {', '.join(sorted(CATALOGUE))}, null",
    )
    check(f.offer in ("idle", "all"), "fleet.offer", f.offer, "allowed: idle, all")
    check(c.medium in ("dedicated", "shared"), "channel.medium", c.medium, "allowed: dedicated, shared")
    check(isinstance(c.cells, int) and c.cells >= 1, "channel.cells", c.cells, "must be an integer >= 1")
    check(
        c.cells <= MAX_CELLS, "channel.cells", c.cells, f"at most {MAX_CELLS:,} (access points, each a SimPy resource)"
    )
    check(c.duplex in ("half", "full"), "channel.duplex", c.duplex, "allowed: half, full")
    for name in ("cell_up_bps", "cell_down_bps"):
        v = getattr(c, name)
        if v is not None:
            positive(f"channel.{name}", v)
    check(c.modulation in MODULATIONS, "channel.modulation", c.modulation, f"allowed: {', '.join(MODULATIONS)}")
    link_spread(cfg)
    n = num_devices if num_devices is not None else f.num_devices
    _check_trace("availability", f.availability_trace, n)
    _check_trace("capacity", f.capacity_trace, n)


def with_capacity(cfg: Config, fleet: Fleet) -> Fleet:
    """`fleet` with the FLOP rates of `fleet.capacity_trace` (as given; or FedScale's
    milliseconds per sample, as a speed relative to the trace's median device)."""
    trace = _check_trace("capacity", cfg.fleet.capacity_trace, len(fleet))
    if trace is None:
        return fleet
    rate = np.array(fleet.flops_per_s, dtype=np.float64)
    devices = np.asarray(trace.devices)
    given = np.asarray(trace.flops_per_s, dtype=np.float64)
    ms = getattr(trace, "computation_ms_per_sample", None)
    if ms is not None and np.isfinite(np.asarray(ms, dtype=np.float64)).any():
        ms = np.asarray(ms, dtype=np.float64)
        ok = np.isfinite(ms) & (ms > 0)
        rate[devices[ok]] *= float(np.median(ms[ok])) / ms[ok]
    ok = np.isfinite(given)
    rate[devices[ok]] = given[ok]
    rate.setflags(write=False)
    return replace(fleet, flops_per_s=rate)


def _availability(cfg: Config, fleet: Fleet):
    f = cfg.fleet
    trace = _check_trace("availability", f.availability_trace, len(fleet))
    if trace is not None:
        return TraceAvailability(trace, len(fleet))
    if f.availability >= 1.0:
        return AlwaysOnline()
    key = int.from_bytes(
        np.random.SeedSequence(stream_seed(cfg.seed, "availability")).generate_state(2, np.uint32).tobytes(), "little"
    )
    online = np.full(len(fleet), float(f.online_s))
    return Renewal(key, online, online * (1.0 - f.availability) / f.availability)


def _links(cfg: Config, fleet: Fleet, traces: bool = True):
    """device -> (up, down) links: the channel's own, each device's draw, or the capacity trace's bandwidth."""
    base = build_link(cfg.channel)
    spread = link_spread(cfg)
    trace = _check_trace("capacity", cfg.fleet.capacity_trace, len(fleet)) if traces else None
    bandwidth = {}
    if trace is not None:
        for d, bps in zip(np.asarray(trace.devices).tolist(), np.asarray(trace.bandwidth_bps, dtype=float).tolist()):
            if math.isfinite(bps):
                bandwidth[d] = bps
    same = device_link(base, spread, np.random.default_rng(0)) if spread.kind == "same" else None
    if same is not None and not bandwidth:
        pair = (same.up, same.down)
        return lambda _d: pair

    @functools.lru_cache(maxsize=1 << 16)
    def links(d: int) -> tuple[Link, Link]:
        dl = same or device_link(base, spread, stream(cfg.seed, "link", d))
        up, down = dl.up, dl.down
        if d in bandwidth:
            up = replace(up, bandwidth_bps=bandwidth[d] * spread.up_scale)
            down = replace(down, bandwidth_bps=bandwidth[d])
        return up, down

    return links


def build_network(
    cfg: Config, fleet: Fleet, *, label=str, timeline: bool = True, own_devices: DeviceProfile | None = None
) -> tuple[Network, Server]:
    """One clock for the run, and on it the fleet's devices and the server, over the medium and
    links of `channel.*`. A workload with devices of its own (NoNN's students, a pipeline's
    stages: `devices.fleet_of`) passes its server's profile as `own_devices`: `fleet.*` (the
    availability process, batteries, the server's profile) is then not its setting, and its
    devices are always online and mains powered."""
    env = simpy.Environment()
    c = cfg.channel
    medium = Medium(
        env,
        c.medium,
        cells=c.cells,
        up_bps=c.cell_up_bps or c.bandwidth_bps,
        down_bps=c.cell_down_bps or c.bandwidth_bps,
        duplex=c.duplex,
    )
    ledger = EnergyLedger.of(fleet)
    recorder = Timeline() if timeline else None
    if own_devices is not None:
        net = Network(env, ledger, medium, AlwaysOnline(), _links(cfg, fleet, traces=False), label, recorder)
        return net, Server(env, own_devices, recorder)
    if cfg.fleet.battery_j:
        joules = np.array([dict(cfg.fleet.battery_j).get(p.name, math.inf) for p in fleet.profiles], dtype=np.float64)
        ledger.with_batteries(joules[fleet.kind])
    net = Network(env, ledger, medium, _availability(cfg, fleet), _links(cfg, fleet), label, recorder)
    server = Server(env, CATALOGUE[cfg.fleet.server] if cfg.fleet.server else None, recorder)
    return net, server


def plain_network(fleet: Fleet, link: Link, *, server: str | None = None) -> tuple[Network, Server]:
    """Devices always online on dedicated copies of `link`, no batteries (tests, benchmarks)."""
    env = simpy.Environment()
    ledger = EnergyLedger.of(fleet)
    timeline = Timeline()
    net = Network(env, ledger, Medium(env, "dedicated"), AlwaysOnline(), lambda _d: (link, link), str, timeline)
    return net, Server(env, CATALOGUE[server] if server else None, timeline)
