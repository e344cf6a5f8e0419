"""Tests for devices/traces.py (trace loaders, online/next_change) and devices/make_trace.py."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from devices.make_trace import device_capacity, device_spans, main, write_availability, write_capacity
from devices.traces import AvailabilityTrace, CapacityTrace, check_devices, load_availability, load_capacity

from ..conftest import CONF_DIR

TRACES = CONF_DIR / "traces"
FIELDS = ("devices", "offsets", "starts", "ends", "period_s")


def same_trace(a: AvailabilityTrace, b: AvailabilityTrace) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def refused(load, path: Path, *words: str) -> str:
    """The one-line message `load(path)` is refused with; it starts with the path and holds `words`."""
    with pytest.raises(ValueError) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for w in words:
        assert w in msg, msg
    return msg


# ---- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json", "fedscale"])
def test_availability_round_trips_through_each_format(tmp_path: Path, fmt: str) -> None:
    spans = [device_spans(7, d, 600.0, 300.0, 3600.0) for d in range(5)]
    spans[3] = [(0, 10), (3590, 3600)]  # online across the wrap
    out = tmp_path / {"csv": "a.csv", "json": "a.json", "fedscale": "client_behave_trace"}[fmt]
    write_availability(out, spans, 3600.0, fmt)
    t = load_availability(out)
    assert t.devices.tolist() == list(range(5)) and t.max_device == 4
    assert np.all(t.period_s == 3600.0)
    for d, sp in enumerate(spans):
        lo, hi = t.offsets[d], t.offsets[d + 1]
        assert list(zip(t.starts[lo:hi].tolist(), t.ends[lo:hi].tolist())) == [(float(s), float(e)) for s, e in sp]
    assert t.online(3, 3595.0) and t.online(3, 3600.0 * 5 + 5) and not t.online(3, 20.0)
    assert t.next_change(3, 3595.0) == 3610.0  # the spell crosses the period's end


@pytest.mark.parametrize("fmt", ["csv", "json", "fedscale"])
def test_capacity_round_trips_through_each_format(tmp_path: Path, fmt: str) -> None:
    caps = [device_capacity(3, d) for d in range(4)]
    out = tmp_path / {"csv": "c.csv", "json": "c.json", "fedscale": "c.pkl"}[fmt]
    write_capacity(out, caps, fmt)
    c = load_capacity(out)
    assert c.devices.tolist() == [0, 1, 2, 3] and c.max_device == 3
    for d, (f, b) in enumerate(caps):
        flops, bw = c.get(d)
        assert bw == pytest.approx(b, rel=1e-9)
        if fmt == "fedscale":  # ms per sample instead of FLOP/s
            assert math.isnan(flops) and c.computation_ms_per_sample[d] == pytest.approx(1000 * 50e6 / f, rel=1e-4)
        else:
            assert flops == pytest.approx(f, rel=1e-9) and math.isnan(c.computation_ms_per_sample[d])
    assert c.get(4) is None


def test_capacity_cells_may_be_missing(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("device,bandwidth_bps,flops_per_s\n5,,2e9\n1,3e6,\n")
    c = load_capacity(tmp_path / "c.csv")
    assert c.devices.tolist() == [1, 5]
    assert c.get(5)[0] == 2e9 and math.isnan(c.get(5)[1]) and c.get(1)[1] == 3e6 and math.isnan(c.get(1)[0])
    (tmp_path / "c.json").write_text('{"devices": {"2": {"bandwidth_bps": 1e6}}}')
    assert load_capacity(tmp_path / "c.json").get(2)[1] == 1e6


def test_shipped_traces_load_are_small_and_match_each_other() -> None:
    for name in ("availability_30.csv", "capacity_30.csv", "fedscale_behave_30.pkl", "fedscale_capacity_30.pkl"):
        assert (TRACES / name).stat().st_size < 100_000
    ours = load_availability(TRACES / "availability_30.csv")
    theirs = load_availability(TRACES / "fedscale_behave_30.pkl")
    assert same_trace(ours, theirs) and ours.devices.tolist() == list(range(30))
    cap, fs = load_capacity(TRACES / "capacity_30.csv"), load_capacity(TRACES / "fedscale_capacity_30.pkl")
    np.testing.assert_allclose(cap.bandwidth_bps, fs.bandwidth_bps)
    for trace in (ours, theirs, cap, fs):
        check_devices(trace, 30)
    frac = np.mean([ours.online_mask(t, 30).mean() for t in np.arange(0.0, 86400.0, 300.0)])
    assert 0.55 < frac < 0.78  # 600 s on, 300 s off: 2/3 online


def test_generator_reproduces_the_shipped_traces(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, c = tmp_path / "availability_30.csv", tmp_path / "capacity_30.csv"
    main([str(a), "--devices", "30", "--seed", "0", "--format", "csv", "--capacity", str(c)])
    b, k = tmp_path / "fedscale_behave_30.pkl", tmp_path / "fedscale_capacity_30.pkl"
    main([str(b), "--devices", "30", "--seed", "0", "--format", "fedscale", "--capacity", str(k)])
    for f in (a, c, b, k):
        assert f.read_bytes() == (TRACES / f.name).read_bytes(), f.name
    assert "30 devices" in capsys.readouterr().out


# ---- online / next_change against a brute-force reference -----------------------------------------


def random_trace(rng: np.random.Generator, tmp_path: Path) -> tuple[AvailabilityTrace, dict, dict]:
    """A random trace on an integer grid, written as CSV and read back, with its spans and periods."""
    spans, periods, rows = {}, {}, []
    for d in rng.choice(9, size=rng.integers(1, 5), replace=False).tolist():
        p = [None, 10, 17][rng.integers(3)]
        top = p or 30
        pts = np.sort(rng.choice(np.arange(top + 1), size=2 * rng.integers(0, 4), replace=False))
        if len(pts) and rng.random() < 0.3:
            pts[0] = 0
        if len(pts) and rng.random() < 0.3:
            pts[-1] = top
        sp = [(int(a), int(b)) for a, b in pts.reshape(-1, 2)]
        if sp and sp[0][1] - sp[0][0] >= 2 and rng.random() < 0.5:  # split one spell in two touching ones
            a, b = sp[0]
            sp[:1] = [(a, a + 1), (a + 1, b)]
        if sp and p is None and rng.random() < 0.3:
            sp[-1] = (sp[-1][0], math.inf)
        if not sp:
            sp = [(2, 3)]  # CSV cannot name a device without intervals
        spans[d], periods[d] = sp, p
        rows += [f"{d},{a},{b},{'' if p is None else p}" for a, b in sp]
    path = tmp_path / "r.csv"
    path.write_text("device,start_s,end_s,period_s\n" + "\n".join(rng.permutation(rows).tolist()) + "\n")
    return load_availability(path), spans, periods


def ref_online(sp: list, p: int | None, t: float) -> bool:
    shifts = [0] if p is None else [p * k for k in range(math.floor(t / p) - 1, math.floor(t / p) + 2)]
    return any(a + k <= t < b + k for a, b in sp for k in shifts)


def ref_next_change(sp: list, p: int | None, t: float) -> float:
    k0 = 0 if p is None else math.floor(t / p)
    shifts = [0] if p is None else [p * k for k in range(k0, k0 + 3)]
    for c in sorted({x + k for a, b in sp for x in (a, b) for k in shifts if x + k > t and math.isfinite(x)}):
        if ref_online(sp, p, c) != ref_online(sp, p, c - 0.5):  # boundaries are integers
            return float(c)
    return math.inf


def test_online_and_next_change_match_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(12345)
    for _ in range(100):
        trace, spans, periods = random_trace(rng, tmp_path)
        times = np.concatenate((np.arange(-2.0, 36.0, 0.5), rng.uniform(-50, 200, 6).round(1)))
        absent = [d for d in range(12) if d not in spans]
        for t in times.tolist():
            mask = trace.online_mask(t, 12)
            assert mask[absent].all()
            for d in spans:
                want = ref_online(spans[d], periods[d], t)
                assert trace.online(d, t) == want == mask[d], (spans[d], periods[d], t)
                assert trace.next_change(d, t) == ref_next_change(spans[d], periods[d], t), (spans[d], periods[d], t)


def test_devices_a_trace_does_not_name_are_always_online() -> None:
    trace = load_availability(TRACES / "availability_30.csv")
    for t in (-1.0, 0.0, 123.4, 1e9):
        assert trace.online(30, t) and trace.online(10**6, t) and trace.next_change(30, t) == math.inf
        assert trace.online_mask(t, 40)[30:].all()


def test_periodic_wrap_and_far_times() -> None:
    t = AvailabilityTrace(
        devices=np.array([0, 1, 2]),
        offsets=np.array([0, 2, 3, 3]),
        starts=np.array([0.0, 80.0, 0.0]),
        ends=np.array([20.0, 100.0, 100.0]),
        period_s=np.array([100.0, 100.0, 100.0]),
    )
    assert t.next_change(0, 50.0) == 80.0 and t.next_change(0, 80.0) == 120.0  # [80, 100) + [0, 20): one spell
    assert t.next_change(0, 99.5) == 120.0 and t.online(0, 100.0) and t.online(0, -5.0)
    assert t.next_change(0, 1e8 + 50) == 1e8 + 80 and t.online(0, 1e8 + 85) and not t.online(0, 1e8 + 50)
    assert t.next_change(1, 0.0) == math.inf and t.online(1, 12345.6)  # online all period: never changes
    assert t.next_change(2, 0.0) == math.inf and not t.online(2, 5.0)  # named, no intervals: never online
    assert t.online_mask(85.0, 5).tolist() == [True, True, False, True, True]
    assert t.online_mask(50.0, 2).tolist() == [False, True]  # devices past n are left out


def test_trace_arrays_are_checked_and_read_only() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        AvailabilityTrace(np.array([0]), np.array([0, 2]), np.array([0, 5.0]), np.array([10, 20.0]), np.array([np.inf]))
    t = load_availability(TRACES / "availability_30.csv")
    with pytest.raises(ValueError, match="read-only"):
        t.starts[0] = 1.0
    with pytest.raises(ValueError, match="sorted"):
        CapacityTrace(np.array([1, 0]), np.ones(2), np.ones(2))


# ---- refusals --------------------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    for name in ("evil.pkl", "client_behave_trace"):
        (tmp_path / name).write_bytes(pickle.dumps({1: _RunsCode(marker)}, protocol=protocol))
        for load in (load_availability, load_capacity):
            if name == "client_behave_trace" and protocol < 2:
                refused(load, tmp_path / name, "unknown trace format")  # no pickle magic: not sniffed
            else:
                refused(load, tmp_path / name, "holds code or objects", "not a plain trace", "system")
    assert not marker.exists()


def test_numpy_and_other_objects_are_refused(tmp_path: Path) -> None:
    arr = {1: {"active": np.arange(3), "inactive": np.arange(1, 4), "finish_time": 10}}
    (tmp_path / "np.pkl").write_bytes(pickle.dumps(arr))
    refused(load_availability, tmp_path / "np.pkl", "holds code or objects")
    (tmp_path / "f.pkl").write_bytes(pickle.dumps({1: {"computation": np.float64(3.0), "communication": 1.0}}))
    refused(load_capacity, tmp_path / "f.pkl", "holds code or objects")
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({1: {"active": {1, 2}, "inactive": [3], "finish_time": 10}}))
    refused(load_availability, tmp_path / "s.pkl", "lists of equal length")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ([1, 2, 3], "expected a dict of clients"),
        ({1: {"active": [0]}}, "lacks inactive, finish_time"),
        ({0: {"active": [0], "inactive": [1], "finish_time": 10}}, "client id 0"),
        ({"a": {"active": [0], "inactive": [1], "finish_time": 10}}, "not an integer"),
        ({1: {"active": [0, 5], "inactive": [1], "finish_time": 10}}, "equal length"),
        ({1: {"active": ["x"], "inactive": [1], "finish_time": 10}}, "not a number"),
        ({1: {"active": [5], "inactive": [2], "finish_time": 10}}, "client 1: interval [5, 2) has end <= start"),
        ({1: {"active": [5], "inactive": [20], "finish_time": 10}}, "ends after the period"),
        ({1: {"active": [0], "inactive": [1], "finish_time": 0}}, "finish_time: must be finite and > 0"),
        ({1: {"active": [0, 3], "inactive": [5, 8], "finish_time": 10}}, "overlap"),
    ],
)
def test_fedscale_behave_structure_is_checked(tmp_path: Path, content: object, words: str) -> None:
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(content))
    refused(load_availability, tmp_path / "b.pkl", words)


def test_fedscale_capacity_structure_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    for content, words in [
        ({1: {"computation": 0.0, "communication": 5.0}}, "computation: must be finite and > 0, got 0"),
        ({1: {"computation": 3.0, "communication": -5.0}}, "communication: must be finite and > 0"),
        ({1: {"active": [0], "inactive": [1], "finish_time": 10}}, "not a FedScale client_device_capacity"),
        ({1: {"computation": True, "communication": 5.0}}, "not a number"),
    ]:
        path.write_bytes(pickle.dumps(content))
        refused(load_capacity, path, words)


def test_files_that_are_not_traces_are_refused(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    png = b"\x89PNG\r\n\x1a\n" + noise
    cases = [
        ("missing.csv", None, "file not found"),
        ("img.csv", png, "not a trace: binary data"),
        ("img.json", png, "not a trace: binary data"),
        ("img.png", png, "unknown trace format '.png'"),
        ("noise.pkl", b"\x80\x04" + noise, "not a trace"),
        ("noise", b"\x01" + noise, "unknown trace format '(no suffix)'"),
        ("text.csv", "Lorem ipsum dolor sit amet,\nconsectetur adipiscing elit\n", "not a trace: CSV header needs"),
        ("empty.csv", "", "not a trace"),
        ("text.json", "Lorem ipsum\n", "not a trace: invalid JSON"),
        ("list.json", "[1, 2]", "not an availability trace"),
        ("notes.txt", "device,start_s,end_s\n0,0,1\n", "unknown trace format '.txt'"),
    ]
    for name, data, words in cases:
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        refused(load_availability, path, words)
    refused(load_availability, tmp_path, "not a file")
    (tmp_path / "av.json").write_text('{"devices": {"0": [[0, 1]]}}')
    refused(load_capacity, tmp_path / "av.json", "not a capacity trace")
    refused(load_capacity, tmp_path / "text.csv", "CSV header needs device and any of flops_per_s")


@pytest.mark.parametrize(
    ("csv_text", "words"),
    [
        ("device,start_s,end_s\n0,10,5\n", "device 0: interval [10, 5) has end <= start"),
        ("device,start_s,end_s\n0,10,10\n", "end <= start"),
        ("device,start_s,end_s\n0,-5,5\n", "starts before 0"),
        ("device,start_s,end_s\n0,0,10\n0,5,15\n", "device 0: intervals [0, 10) and [5, 15) overlap"),
        ("device,start_s,end_s\n-1,0,1\n", "device id -1 is negative"),
        ("device,start_s,end_s\n1.5,0,1\n", "device id '1.5' is not an integer"),
        ("device,start_s,end_s\nx,0,1\n", "not an integer"),
        ("device,start_s,end_s\n0,a,1\n", "line 2: start_s: 'a' is not a number"),
        ("device,start_s,end_s\n0,nan,1\n", "must be a number, got nan"),
        ("device,start_s,end_s\n0,1\n", "line 2: 2 fields, the header has 3"),
        ("device,start_s,end_s,period\n0,0,1,5\n", "unknown or repeated column(s) period"),
        ("device,start_s,end_s,period_s\n0,0,10,5\n", "ends after the period, 5 s"),
        ("device,start_s,end_s,period_s\n0,0,1,0\n", "period_s: must be finite and > 0"),
        ("device,start_s,end_s,period_s\n0,0,1,5\n0,2,3,6\n", "line 3: device 0 has period_s 6, earlier 5"),
    ],
)
def test_bad_availability_csv_is_refused(tmp_path: Path, csv_text: str, words: str) -> None:
    (tmp_path / "a.csv").write_text(csv_text)
    refused(load_availability, tmp_path / "a.csv", words)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"devices": {"0": [[5, 1]]}}, "end <= start"),
        ({"devices": {"0": [[0, 1]], "00": [[2, 3]]}}, "device 0 is listed twice"),
        ({"devices": {"0": [[0, 1, 2]]}}, "[start, end] pairs"),
        ({"devices": {"-2": [[0, 1]]}}, "negative"),
        ({"period": 5, "devices": {}}, "not an availability trace"),
        ({"period_s": -1, "devices": {"0": []}}, "period_s: must be finite and > 0"),
        ({"devices": {"0": [[0, True]]}}, "not a number"),
    ],
)
def test_bad_availability_json_is_refused(tmp_path: Path, doc: dict, words: str) -> None:
    (tmp_path / "a.json").write_text(json.dumps(doc))
    refused(load_availability, tmp_path / "a.json", words)


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("c.csv", "device,flops_per_s,bandwidth_bps\n0,0,1e6\n", "line 2: flops_per_s: must be finite and > 0, got 0"),
        ("c.csv", "device,flops_per_s,bandwidth_bps\n0,1e9,-3\n", "bandwidth_bps: must be finite and > 0, got -3"),
        ("c.csv", "device,flops_per_s,bandwidth_bps\n0,1e9,1\n0,1e9,2\n", "device 0 is listed twice"),
        ("c.csv", "device,start_s,end_s\n0,0,1\n", "CSV header needs device and any of"),
        ("c.json", '{"devices": {"0": {"flops_per_s": 0}}}', "device 0: flops_per_s: must be finite and > 0"),
        ("c.json", '{"devices": {"0": {"flops": 1e9}}}', "keys among flops_per_s"),
        ("c.json", '{"devices": {"zero": {"flops_per_s": 1e9}}}', "device id 'zero' is not an integer"),
    ],
)
def test_bad_capacity_is_refused(tmp_path: Path, name: str, text: str, words: str) -> None:
    (tmp_path / name).write_text(text)
    refused(load_capacity, tmp_path / name, words)


def test_check_devices() -> None:
    trace = load_availability(TRACES / "availability_30.csv")
    check_devices(trace, 30)
    check_devices(trace, 100_000)
    with pytest.raises(ValueError) as info:
        check_devices(trace, 20)
    assert str(info.value) == "trace names device 29 but the fleet has only 20 devices (0..19)"
    with pytest.raises(ValueError, match="device 29 but the fleet has only 20"):
        check_devices(load_capacity(TRACES / "fedscale_capacity_30.pkl"), 20)


def test_online_mask_scales_to_a_large_fleet() -> None:
    n, traced = 100_000, 10_000
    spans = [(0.0, 100.0), (200.0, 300.0)]
    starts = np.tile([s for s, _ in spans], traced)
    ends = np.tile([e for _, e in spans], traced)
    trace = AvailabilityTrace(
        devices=np.arange(0, n, n // traced),
        offsets=np.arange(0, 2 * traced + 1, 2),
        starts=starts,
        ends=ends,
        period_s=np.full(traced, 400.0),
    )
    mask = trace.online_mask(450.0 + 4e5, n)
    assert mask.sum() == n and trace.online_mask(150.0, n).sum() == n - traced
