"""Each setting checked against its schema's declared type (and finite, where a float) before
any check compares values: `check_types(cfg)` walks the dataclasses of `sim.config` and of the
workload's schema and raises `ConfigError` naming the first setting whose value does not fit."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from sim.config import ConfigError, check

__all__ = ["check_types"]

OPAQUE_SETTINGS = frozenset({"workload.app.run_config"})
INT64_MAX = 2**63 - 1  # what numpy and torch index and count with


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_finite(path: str, value: Any) -> None:
    """No NaN or infinity in a value of free form (a strategy's params, a device profile, ...)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}={value!r}: must be a finite number")
    if _is_int(value) and abs(value) > INT64_MAX:
        raise ConfigError(f"{path}={value!r}: out of range (at most 2**63 - 1)")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{path}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_finite(path, v)


def _check_value(path: str, value: Any, hint: Any, optional: bool = False) -> None:
    """`value` of the setting `path` against its schema annotation `hint` (one-line ConfigError)."""

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    null = ", or null" if optional else ""
    if hint is Any:
        if path not in OPAQUE_SETTINGS:
            _check_finite(path, value)
    elif origin is typing.Union:  # Optional[X]
        if value is not None:
            _check_value(path, value, next(a for a in args if a is not type(None)), optional=True)
    elif dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise ConfigError(f"{path}={value!r}: a section of settings, not a value")
        check_types(value, path)
    elif hint is bool:
        check(isinstance(value, bool), path, value, f"must be true or false{null}")
    elif hint is int:
        check(_is_int(value), path, value, f"must be an integer{null}")
        check(abs(value) <= INT64_MAX, path, value, "out of range (at most 2**63 - 1)")
    elif hint is float:
        check(_is_number(value), path, value, f"must be a number{null}")
        check(not _is_int(value) or abs(value) <= INT64_MAX, path, value, "out of range (at most 2**63 - 1)")
        check(math.isfinite(value), path, value, f"must be a finite number{null}")
    elif hint is str:
        check(isinstance(value, str), path, value, f"must be a string{null}")
    elif origin is list:
        check(isinstance(value, (list, tuple)), path, value, f"must be a list{null}")
        for v in value:
            try:
                _check_value(path, v, args[0])
            except ConfigError as exc:  # name the list as a whole: it is one setting
                why = str(exc).rpartition(": ")[2]
                raise ConfigError(f"{path}={list(value)!r}: each element {why}") from None
    elif origin is dict:
        check(isinstance(value, dict), path, value, f"must be a mapping of names to values{null}")
        if path in OPAQUE_SETTINGS:
            return
        for k, v in value.items():
            check(isinstance(k, str) and k != "", path, dict(value), f"the key {k!r} is not a name")
            _check_value(f"{path}.{k}", v, args[1])


def check_types(section: Any, prefix: str = "") -> None:
    """Every setting of the dataclass `section` (and of the sections within, the workload's own
    included) against its schema's type: an integer, a finite number (never NaN or infinity:
    no setting takes them), a string, true/false, a list or mapping of those. The command line's
    values are typed by Hydra already; this holds for a config built in Python too, so that each
    setting's own range check sees a value of its type. One-line ConfigError naming the setting."""

    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        if prefix == "" and f.name == "compared":  # not a setting: filled by the entry point
            continue
        path = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(section, f.name)
        if prefix == "" and f.name == "workload":
            if not dataclasses.is_dataclass(value):
                raise ConfigError(f"workload={value!r}: choose a workload, e.g. workload=federated")
            check_types(value, "workload")
        else:
            _check_value(path, value, hints[f.name])
