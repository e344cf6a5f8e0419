"""A fleet of devices as flat arrays (scales to 1e5+ devices; no per-device objects)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from .catalogue import CATALOGUE
from .profile import STATES, DeviceProfile

_SPREAD_FIELDS = ("flops_per_s", "compute_w", "transmit_w", "receive_w", "idle_w")


@dataclass(frozen=True, eq=False)
class Fleet:
    """Per-device arrays (read-only), indexed by device id; `kind[i]` indexes `profiles`."""

    profiles: tuple[DeviceProfile, ...]
    kind: np.ndarray
    flops_per_s: np.ndarray
    memory_bytes: np.ndarray
    compute_w: np.ndarray
    transmit_w: np.ndarray
    receive_w: np.ndarray
    idle_w: np.ndarray

    def __post_init__(self) -> None:
        n = self.kind.shape
        for name in ("flops_per_s", "memory_bytes", *_SPREAD_FIELDS[1:]):
            if getattr(self, name).shape != n or len(n) != 1:
                raise ValueError(f"Fleet.{name}: shape must be {n}, one entry per device")

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def profile_name(self, i: int) -> str:
        """Catalogue name of device i's kind."""
        return self.profiles[int(self.kind[i])].name

    def device(self, i: int) -> DeviceProfile:
        """Device i as a DeviceProfile, with its own (spread-applied) rates and powers."""
        return replace(
            self.profiles[int(self.kind[i])],
            memory_bytes=int(self.memory_bytes[i]),
            flops_per_s=float(self.flops_per_s[i]),
            compute_w=float(self.compute_w[i]),
            transmit_w=float(self.transmit_w[i]),
            receive_w=float(self.receive_w[i]),
            idle_w=float(self.idle_w[i]),
        )

    def compute_time_s(self, flops: float, device: int) -> float:
        """Seconds device `device` takes to run `flops` at its sustained rate."""
        return float(flops) / float(self.flops_per_s[device])

    def power_w(self, state: str) -> np.ndarray:
        """Per-device power draw in `state`."""
        if state not in STATES:
            raise ValueError(f"unknown device state {state!r}; allowed: {', '.join(STATES)}")
        return getattr(self, f"{state}_w")


def _allowed() -> str:
    return ", ".join(sorted(CATALOGUE))


def _counts(mix: Mapping[str, float | int], num_devices: int | None) -> tuple[list[str], list[int]]:
    """Validated profile names (sorted) and device counts per name."""
    if not isinstance(mix, Mapping) or len(mix) == 0:
        raise ValueError(f"fleet.mix: empty; give at least one profile from: {_allowed()}")
    names = sorted(str(k) for k in mix)
    for name in names:
        if name not in CATALOGUE:
            raise ValueError(f"fleet.mix: unknown device profile {name!r}; allowed: {_allowed()}")
    values = {str(k): v for k, v in mix.items()}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"fleet.mix.{name}={v!r}: must be a count or fraction >= 0")
    if num_devices is not None and (
        isinstance(num_devices, bool) or not isinstance(num_devices, numbers.Integral) or num_devices < 0
    ):
        raise ValueError(f"fleet.num_devices={num_devices!r}: must be a positive integer")
    n = int(num_devices or 0)

    if all(isinstance(v, numbers.Integral) for v in values.values()):
        counts = [int(values[k]) for k in names]
        total = sum(counts)
        if total == 0:
            raise ValueError("fleet.mix: counts sum to 0; a fleet needs at least one device")
        if n and n != total:
            raise ValueError(f"fleet.num_devices={n}: fleet.mix counts sum to {total}; give {total}, or omit it")
        return names, counts

    weights = [Fraction(float(values[k])) for k in names]
    total_w = sum(weights)
    if total_w == 0:
        raise ValueError("fleet.mix: fractions sum to 0; give at least one positive fraction")
    if n == 0:
        raise ValueError(
            f"fleet.num_devices={num_devices!r}: a positive integer is required when fleet.mix gives fractions"
        )
    # Largest remainder (Hamilton); exact rational arithmetic, ties broken by name order.
    quotas = [w * n / total_w for w in weights]
    counts = [math.floor(q) for q in quotas]
    left = n - sum(counts)
    order = sorted(range(len(names)), key=lambda i: (-(quotas[i] - counts[i]), names[i]))
    for i in order[:left]:
        counts[i] += 1
    return names, counts


def fleet_counts(mix: Mapping[str, float | int], num_devices: int | None = None) -> dict[str, int]:
    """The devices of each profile a fleet of `mix` and `num_devices` has, computed without
    building it (no array of `num_devices`): a ValueError naming the setting if none can be built."""
    names, counts = _counts(mix, num_devices)
    return dict(zip(names, counts))


def build_fleet(
    mix: Mapping[str, float | int],
    num_devices: int | None = None,
    *,
    spread: float = 0.0,
    rng: np.random.Generator,
) -> Fleet:
    """Build a fleet from a profile mix (all-integer counts, or fractions normalised to sum 1).

    Devices are put in a seeded random order (kinds interleaved). With spread s in [0, 1), each
    device's flops_per_s and four powers are scaled by independent Uniform[1-s, 1+s) factors;
    memory is unchanged. Draws from `rng`: one permutation, then (if s > 0) 5 x n uniforms.
    """
    if isinstance(spread, bool) or not isinstance(spread, numbers.Real) or not 0 <= spread < 1:
        raise ValueError(f"fleet.spread={spread!r}: allowed range is [0, 1)")
    names, counts = _counts(mix, num_devices)
    profiles = tuple(CATALOGUE[k] for k in names)
    kind = rng.permutation(np.repeat(np.arange(len(profiles), dtype=np.int64), counts))
    n = kind.shape[0]

    arrays: dict[str, np.ndarray] = {}
    for field in _SPREAD_FIELDS:
        arrays[field] = np.array([getattr(p, field) for p in profiles], dtype=np.float64)[kind]
    if spread > 0:
        factors = rng.uniform(1.0 - spread, 1.0 + spread, size=(len(_SPREAD_FIELDS), n))
        for j, field in enumerate(_SPREAD_FIELDS):
            arrays[field] *= factors[j]
    arrays["memory_bytes"] = np.array([p.memory_bytes for p in profiles], dtype=np.int64)[kind]
    arrays["kind"] = kind
    for a in arrays.values():
        a.setflags(write=False)
    return Fleet(profiles=profiles, **arrays)


def fleet_of(profiles: Sequence[DeviceProfile]) -> Fleet:
    """A fleet of exactly these devices, in this order (device i is `profiles[i]`): the named
    devices of a workload (a pipeline's stages, NoNN's students), on the same network as a fleet."""
    kinds: list[DeviceProfile] = []
    for p in profiles:
        if p not in kinds:
            kinds.append(p)
    kind = np.array([kinds.index(p) for p in profiles], dtype=np.int64)
    arrays = {f: np.array([getattr(p, f) for p in profiles], dtype=np.float64) for f in _SPREAD_FIELDS}
    arrays["memory_bytes"] = np.array([p.memory_bytes for p in profiles], dtype=np.int64)
    for a in (kind, *arrays.values()):
        a.setflags(write=False)
    return Fleet(profiles=tuple(kinds), kind=kind, **arrays)
