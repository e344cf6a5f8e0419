"""Device traces from files: when each device is online (`AvailabilityTrace`), and what each one
can do (`CapacityTrace`). No clock. Formats, by file suffix (sim/conf/traces/README.md): our CSV and
JSON, and FedScale's two pickles, read without running any code they carry. Every problem with a
file is a one-line ValueError that begins with the file's path."""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_CAP_FIELDS = ("flops_per_s", "bandwidth_bps", "computation_ms_per_sample")
_PICKLE_MAGIC = re.compile(rb"\x80[\x02-\x05]")
_MAX_ID = 2**62
_AV_KEYS = {"period_s", "devices"}
_WHO = ("device {}", "client {}")  # how messages name device d: _WHO[offset].format(d + offset)
_FEDSCALE_CAP = ("computation", "communication")


def _fold(t: float | np.ndarray, period: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise (start of the period holding t, t's offset in it); an infinite period is no fold."""
    t = np.asarray(t, dtype=np.float64)
    finite = np.isfinite(period)
    p = np.where(finite, period, 1.0)
    with np.errstate(invalid="ignore"):  # t = inf: nan, which nothing matches
        off = np.where(finite, np.mod(t, p), t)
    off = np.where(finite & (off >= p), 0.0, off)  # np.mod(-1e-20, 1.0) rounds to 1.0
    return t - off, off


def _readonly(value: object, dtype: type) -> np.ndarray:
    a = np.array(value, dtype=dtype)
    a.setflags(write=False)
    return a


class _ById:
    """Lookup shared by the two traces: `devices` is a sorted int64 array of device ids."""

    devices: np.ndarray

    def _index(self, device: int) -> int:
        k = int(np.searchsorted(self.devices, device))
        return k if k < self.devices.shape[0] and self.devices[k] == device else -1

    @property
    def max_device(self) -> int:
        """Largest device id named (-1 for an empty trace)."""
        return int(self.devices[-1]) if self.devices.shape[0] else -1


@dataclass(frozen=True, eq=False)
class AvailabilityTrace(_ById):
    """Online intervals [start, end) in seconds, per device, stored CSR-style: device `devices[k]`
    is online in `starts[offsets[k]:offsets[k+1]]`..`ends[...]` (sorted, disjoint, not touching).
    With a finite `period_s[k]` the pattern repeats every period_s (intervals lie in [0, period_s]);
    with inf it does not, and the device is offline after its last interval. A device the trace
    does not name is always online; one named with no intervals is always offline."""

    devices: np.ndarray  # int64, sorted, distinct, >= 0
    offsets: np.ndarray  # int64, len(devices) + 1
    starts: np.ndarray  # float64
    ends: np.ndarray  # float64
    period_s: np.ndarray  # float64 per device; inf: no repeat
    _owner: np.ndarray = field(init=False, repr=False)  # per interval: index into devices
    _change: np.ndarray = field(init=False, repr=False)  # flip times (offsets in the period), CSR
    _change_offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("devices", "offsets", "starts", "ends", "period_s"):
            dtype = np.int64 if name in ("devices", "offsets") else np.float64
            object.__setattr__(self, name, _readonly(getattr(self, name), dtype))
        n, m = self.devices.shape[0], self.starts.shape[0]
        shapes = (self.offsets.shape, self.ends.shape, self.period_s.shape) == ((n + 1,), (m,), (n,))
        if not shapes or self.offsets[0] != 0 or self.offsets[-1] != m or np.any(np.diff(self.offsets) < 0):
            raise ValueError("AvailabilityTrace: offsets must run 0..len(starts); ends like starts; a period each")
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.offsets))
        same = owner[1:] == owner[:-1]
        bad = np.any(np.diff(self.devices) <= 0) | np.any(self.devices < 0) | np.any(~(self.period_s > 0))
        bad |= np.any(~(self.ends > self.starts) | ~(self.starts >= 0) | (self.ends > self.period_s[owner]))
        if bad or np.any(same & (self.starts[1:] < self.ends[:-1])):
            raise ValueError(
                "AvailabilityTrace: need sorted ids >= 0, periods > 0, disjoint 0 <= start < end <= period"
            )
        object.__setattr__(self, "_owner", owner)
        self._find_changes(owner)

    def _find_changes(self, owner: np.ndarray) -> None:
        """Per device, the sorted times in [0, period) (or [0, inf)) at which its state flips."""
        pts = np.empty(2 * owner.shape[0])
        pts[0::2], pts[1::2] = self.starts, self.ends
        own = np.repeat(owner, 2)
        period = self.period_s[own]
        pts = np.where(np.isfinite(period) & (pts == period), 0.0, pts)  # a flip at the period's end is at 0
        keep = np.isfinite(pts)  # an open-ended interval never ends
        order = np.lexsort((pts[keep], own[keep]))
        pts, own = pts[keep][order], own[keep][order]
        # two flips at once are none: touching intervals [a, b) [b, c), or online across the period's wrap
        dup = np.flatnonzero((own[1:] == own[:-1]) & (pts[1:] == pts[:-1]))
        keep = ~np.isin(np.arange(pts.shape[0]), np.concatenate((dup, dup + 1)))
        pts, own = pts[keep], own[keep]
        counts = np.bincount(own, minlength=self.devices.shape[0])
        object.__setattr__(self, "_change", _readonly(pts, np.float64))
        object.__setattr__(self, "_change_offsets", _readonly(np.concatenate(([0], np.cumsum(counts))), np.int64))

    def online(self, device: int, t: float) -> bool:
        """Whether `device` is online at time t (s). Devices the trace does not name: always True."""
        k = self._index(device)
        if k < 0:
            return True
        lo, hi = self.offsets[k], self.offsets[k + 1]
        off = float(_fold(t, self.period_s[k])[1])
        j = int(np.searchsorted(self.starts[lo:hi], off, side="right")) - 1
        return bool(j >= 0 and off < self.ends[lo + j])

    def next_change(self, device: int, t: float) -> float:
        """First time > t at which `device`'s online state flips; inf if it never does again (also
        for devices the trace does not name). Flip the state there rather than asking `online` at
        exactly that time: across many periods, float rounding may land a hair either side."""
        k = self._index(device)
        if k < 0:
            return math.inf
        c = self._change[self._change_offsets[k] : self._change_offsets[k + 1]]
        if c.shape[0] == 0 or not t < math.inf:  # never flips; or asked about t = inf (or nan)
            return math.inf
        base, off = (float(x) for x in _fold(t, self.period_s[k]))
        j = int(np.searchsorted(c, off, side="right"))
        while True:  # at most a step or two: only rounding can leave base + c[j] <= t
            if j == c.shape[0]:
                if not np.isfinite(self.period_s[k]):
                    return math.inf
                base, j = base + float(self.period_s[k]), 0
            if base + c[j] > t:
                return base + float(c[j])
            j += 1

    def online_mask(self, t: float, n: int) -> np.ndarray:
        """Online state at time t of devices 0..n-1 (bool array); unnamed devices are online.
        Vectorised over intervals: O(len(starts)) whatever n is."""
        mask = np.ones(n, dtype=bool)
        off = _fold(t, self.period_s)[1][self._owner]
        hit = (self.starts <= off) & (off < self.ends)
        on = np.bincount(self._owner[hit], minlength=self.devices.shape[0]) > 0
        inside = self.devices < n
        mask[self.devices[inside]] = on[inside]
        return mask


@dataclass(frozen=True, eq=False)
class CapacityTrace(_ById):
    """Per-device capacities over sorted device ids; nan where the file gives none. FedScale's
    format gives `computation_ms_per_sample` (inference time of its reference model) instead of
    flops_per_s, which then stays nan: the simulator scales a device's speed by it."""

    devices: np.ndarray  # int64, sorted, distinct, >= 0
    flops_per_s: np.ndarray  # float64
    bandwidth_bps: np.ndarray  # float64
    computation_ms_per_sample: np.ndarray | None = None  # float64; None: all nan

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", _readonly(self.devices, np.int64))
        if self.computation_ms_per_sample is None:
            object.__setattr__(self, "computation_ms_per_sample", np.full(self.devices.shape, np.nan))
        for name in _CAP_FIELDS:
            object.__setattr__(self, name, _readonly(getattr(self, name), np.float64))
        shapes = {getattr(self, f).shape for f in ("devices", *_CAP_FIELDS)}
        if len(shapes) > 1 or np.any(np.diff(self.devices) <= 0) or np.any(self.devices < 0):
            raise ValueError("CapacityTrace: need sorted distinct devices >= 0 and each array one value per device")

    def get(self, device: int) -> tuple[float, float] | None:
        """(flops_per_s, bandwidth_bps) of `device`, nan where unknown; None if the trace omits it."""
        k = self._index(device)
        return None if k < 0 else (float(self.flops_per_s[k]), float(self.bandwidth_bps[k]))


def check_devices(trace: AvailabilityTrace | CapacityTrace, num_devices: int) -> None:
    """Refuse a trace that names devices outside a fleet of `num_devices` (ids 0..num_devices-1)."""
    d, n = trace.max_device, num_devices
    if d >= n:
        raise ValueError(f"trace names device {d} but the fleet has only {n} devices (0..{n - 1})")


def _err(src: str, msg: str) -> ValueError:
    return ValueError(" ".join(f"{src}: {msg}".split()))


class _Refused(pickle.UnpicklingError):
    """The pickle asked for a global: a class or a callable."""


class _PlainUnpickler(pickle.Unpickler):
    """Makes only what pickle builds without importing anything: dicts, lists, tuples, numbers,
    strings, bools, None (and bytes or sets, which the structure checks then refuse). A persistent
    id fails too: this class gives no `persistent_load`."""

    def find_class(self, module: str, name: str) -> object:
        raise _Refused(re.sub(r"[^\w.]", "?", f"{module}.{name}")[:80])


def _read(path: str | Path) -> tuple[str, str, object]:
    """(source name, format, content): CSV text, parsed JSON, or plain unpickled data."""
    src, p = str(path), Path(path)
    try:
        if not p.is_file():
            raise _err(src, "file not found" if not p.exists() else "not a file")
        data = p.read_bytes()
    except OSError as exc:
        raise _err(src, f"unreadable ({exc.strerror or type(exc).__name__})") from None
    suffix = p.suffix.lower()
    if suffix in (".csv", ".json"):
        try:
            text = data.decode("utf-8-sig")
            return src, suffix[1:], (text if suffix == ".csv" else json.loads(text))
        except UnicodeDecodeError:
            raise _err(src, f"not a trace: binary data, not {suffix[1:].upper()} text") from None
        except json.JSONDecodeError as exc:
            raise _err(src, f"not a trace: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    if suffix in (".pkl", ".pickle") or (suffix == "" and _PICKLE_MAGIC.match(data)):
        try:
            return src, "pickle", _PlainUnpickler(io.BytesIO(data)).load()
        except _Refused as exc:
            raise _err(src, f"holds code or objects ({exc}), not a plain trace; refusing to load it") from None
        except Exception as exc:  # garbage makes pickle raise almost anything
            raise _err(src, f"not a trace: unreadable as a pickle ({type(exc).__name__})") from None
    raise _err(src, f"unknown trace format {suffix or '(no suffix)'!r}: use .csv, .json, .pkl or .pickle")


def _device_id(src: str, raw: object, offset: int = 0) -> int:
    """A device id from an int or a string of digits; FedScale's 1-based client ids use offset 1."""
    what = "client id" if offset else "device id"
    if isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d{1,30}\s*", raw):
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _err(src, f"{what} {str(raw)[:40]!r} is not an integer")
    if not offset <= raw <= _MAX_ID:
        bad = "is negative" if raw < 0 else "is too large" if raw > _MAX_ID else "is 0: FedScale's ids start at 1"
        raise _err(src, f"{what} {raw} {bad}")
    return raw - offset


def _number(src: str, raw: object, where: str, missing_ok: bool = False, positive: bool = False) -> float:
    """A float from a number or numeric text (not nan, not a bool; finite and > 0 if `positive`);
    None or '' gives nan when missing_ok."""
    if missing_ok and (raw is None or (isinstance(raw, str) and not raw.strip())):
        return math.nan
    try:
        x = float(raw if isinstance(raw, int | float | str) and not isinstance(raw, bool) else "?")
    except (ValueError, OverflowError):
        raise _err(src, f"{where}: {str(raw)[:40]!r} is not a number") from None
    if math.isnan(x) or (positive and not 0 < x < math.inf):
        raise _err(src, f"{where}: must be {'finite and > 0' if positive else 'a number'}, got {x:g}")
    return x


def _csv(src: str, text: str, required: Sequence[str], optional: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) for each non-blank row; the header must hold `required`
    (and, with a single required column, at least one optional one)."""
    try:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text))) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise _err(src, f"not a trace: unreadable as CSV ({exc})") from None
    header = [c.strip().lower() for c in rows[0][1]] if rows else []
    if any(c not in header for c in required) or (len(required) == 1 and not set(header) & set(optional)):
        need = f"{required[0]} and any of" if len(required) == 1 else f"{','.join(required)}, optional"
        raise _err(src, f"not a trace: CSV header needs {need} {','.join(optional)}")
    unknown = [c for c in header if c not in (*required, *optional)]
    if unknown or len(set(header)) < len(header):
        raise _err(src, f"CSV header: unknown or repeated column(s) {','.join(unknown or header)[:80]}")
    for line, r in rows[1:]:
        if len(r) != len(header):
            raise _err(src, f"line {line}: {len(r)} fields, the header has {len(header)}")
    return [(line, dict(zip(header, r))) for line, r in rows[1:]]


def _unique(src: str, ids: list[int], offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted ids, the order that sorts `ids`); refuses a device named twice."""
    arr = np.array(ids, dtype=np.int64)
    order = np.argsort(arr, kind="stable")
    twice = np.flatnonzero(np.diff(arr[order]) == 0)
    if twice.shape[0]:
        raise _err(src, f"{_WHO[offset].format(int(arr[order][twice[0]]) + offset)} is listed twice")
    return arr[order], order


def _pack(src: str, ids: list[int], period: list[float], rows: list[tuple[int, float, float]], offset: int = 0):
    """Validate the named devices `ids`, their periods and the intervals (device, start, end);
    merge touching intervals; pack into an AvailabilityTrace."""
    uid, order = _unique(src, ids, offset)
    per = np.array(period, dtype=np.float64)[order]
    dev = np.array([r[0] for r in rows], dtype=np.int64)
    s, e = np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 2).T
    order = np.lexsort((s, dev))
    dev, s, e = dev[order], s[order], e[order]
    p = per[np.searchsorted(uid, dev)]
    same = dev[1:] == dev[:-1]
    for bad, msg in (
        (~np.isfinite(s) | (s < 0), "{who}: interval [{s:g}, {e:g}) starts before 0 or never"),
        (~(e > s), "{who}: interval [{s:g}, {e:g}) has end <= start (a negative or zero duration)"),
        (e > p, "{who}: interval [{s:g}, {e:g}) ends after the period, {p:g} s"),
        (np.append(same & (s[1:] < e[:-1]), False), "{who}: intervals [{s:g}, {e:g}) and [{s2:g}, {e2:g}) overlap"),
    ):
        if np.any(bad):
            i = int(np.argmax(bad))
            who, j = _WHO[offset].format(int(dev[i]) + offset), min(i + 1, dev.shape[0] - 1)
            raise _err(src, msg.format(who=who, s=s[i], e=e[i], p=p[i], s2=s[j], e2=e[j]))
    if dev.shape[0]:  # touching intervals merge
        first = np.concatenate(([True], ~(same & (s[1:] == e[:-1]))))
        dev, s, e = dev[first], s[first], e[np.append(first[1:], True)]
    counts = np.bincount(np.searchsorted(uid, dev), minlength=uid.shape[0])
    return AvailabilityTrace(devices=uid, offsets=np.append(0, np.cumsum(counts)), starts=s, ends=e, period_s=per)


def _fedscale(src: str, content: object, keys: tuple[str, ...], kind: str) -> list[tuple[int, object, dict]]:
    """[(device, client id, record)] of a FedScale pickle: a dict of client id -> dict holding `keys`."""
    if not isinstance(content, dict) or not content:
        raise _err(src, f"not a FedScale {kind}: expected a dict of clients")
    out = []
    for cid, rec in content.items():
        missing = [k for k in keys if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise _err(src, f"not a FedScale {kind}: client {str(cid)[:40]} lacks {', '.join(missing)}")
        out.append((_device_id(src, cid, offset=1), cid, rec))
    return out


def load_availability(path: str | Path) -> AvailabilityTrace:
    """An availability trace from our CSV (`device,start_s,end_s[,period_s]`, one row per online
    interval), our JSON (`{"period_s": P, "devices": {"0": [[start, end], ...]}}`) or FedScale's
    `client_behave_trace` pickle (client c is device c - 1; online in [active[i], inactive[i]),
    repeating every finish_time; its zero-length intervals are dropped)."""
    src, kind, content = _read(path)
    periods: dict[int, float] = {}
    rows: list[tuple[int, float, float]] = []
    if kind == "csv":
        for line, r in _csv(src, content, ("device", "start_s", "end_s"), ("period_s",)):
            d = _device_id(src, r["device"])
            p = _number(src, r.get("period_s", ""), f"line {line}: period_s", missing_ok=True, positive=True)
            if periods.setdefault(d, p) != p and not (math.isnan(p) and math.isnan(periods[d])):
                raise _err(src, f"line {line}: device {d} has period_s {p:g}, earlier {periods[d]:g}; one per device")
            rows.append((d, *(_number(src, r[c], f"line {line}: {c}") for c in ("start_s", "end_s"))))
        return _pack(src, list(periods), [math.inf if math.isnan(p) else p for p in periods.values()], rows)
    if kind == "json":
        if not isinstance(content, dict) or not isinstance(content.get("devices"), dict) or set(content) - _AV_KEYS:
            raise _err(src, 'not an availability trace: expected {"period_s": P (optional), "devices": {"0": [[s,e]]}}')
        p = _number(src, content.get("period_s"), "period_s", missing_ok=True, positive=True)
        ids = [_device_id(src, key) for key in content["devices"]]
        for d, spans in zip(ids, content["devices"].values()):
            if not isinstance(spans, list) or not all(isinstance(x, list) and len(x) == 2 for x in spans):
                raise _err(src, f"not an availability trace: device {d}: expected a list of [start, end] pairs")
            rows.extend((d, _number(src, a, f"device {d}"), _number(src, b, f"device {d}")) for a, b in spans)
        return _pack(src, ids, [math.inf if math.isnan(p) else p] * len(ids), rows)
    clients = _fedscale(src, content, ("active", "inactive", "finish_time"), "client_behave_trace")
    for d, cid, rec in clients:
        on, off, where = rec["active"], rec["inactive"], f"client {cid}: active/inactive"
        if not isinstance(on, (list, tuple)) or not isinstance(off, (list, tuple)) or len(on) != len(off):
            raise _err(src, f"{where} must be lists of equal length")
        periods[d] = _number(src, rec["finish_time"], f"client {cid}: finish_time", positive=True)
        spans = [(_number(src, a, where), _number(src, b, where)) for a, b in zip(on, off)]
        rows.extend((d, a, b) for a, b in spans if a != b)
    return _pack(src, [c[0] for c in clients], [periods[c[0]] for c in clients], rows, offset=1)


def load_capacity(path: str | Path) -> CapacityTrace:
    """A capacity trace from our CSV (`device,flops_per_s,bandwidth_bps`, optional column
    computation_ms_per_sample; an empty cell is unknown), our JSON (`{"devices": {"0":
    {"flops_per_s": x, "bandwidth_bps": y}}}`) or FedScale's `client_device_capacity` pickle
    (`{client: {"computation": ms per sample, "communication": kbps}}`; bandwidth = kbps * 1000)."""
    src, kind, content = _read(path)
    ids: list[int] = []
    vals: list[tuple[float, ...]] = []
    if kind == "csv":
        for line, r in _csv(src, content, ("device",), _CAP_FIELDS):
            ids.append(_device_id(src, r["device"]))
            vals.append(tuple(_number(src, r.get(f, ""), f"line {line}: {f}", True, True) for f in _CAP_FIELDS))
    elif kind == "json":
        if not isinstance(content, dict) or set(content) != {"devices"} or not isinstance(content["devices"], dict):
            raise _err(src, 'not a capacity trace: expected {"devices": {"0": {"flops_per_s": x, ...}}}')
        for key, rec in content["devices"].items():
            ids.append(_device_id(src, key))
            if not isinstance(rec, dict) or set(rec) - set(_CAP_FIELDS):
                raise _err(src, f"not a capacity trace: device {ids[-1]}: expected keys among {', '.join(_CAP_FIELDS)}")
            vals.append(tuple(_number(src, rec.get(f), f"device {ids[-1]}: {f}", True, True) for f in _CAP_FIELDS))
    else:
        for d, cid, rec in _fedscale(src, content, _FEDSCALE_CAP, "client_device_capacity"):
            ms, kbps = (_number(src, rec[k], f"client {cid}: {k}", False, True) for k in _FEDSCALE_CAP)
            ids.append(d)
            vals.append((math.nan, kbps * 1000.0, ms))
    uid, order = _unique(src, ids, int(kind == "pickle"))
    arr = np.array(vals, dtype=np.float64).reshape(-1, 3)[order]
    return CapacityTrace(uid, arr[:, 0], arr[:, 1], arr[:, 2])
