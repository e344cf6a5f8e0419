"""Property-based: settings drawn across the whole schema (the common sections of `sim/config.py`
and every workload's own, walked field by field), valid-looking and not (wrong types, negatives,
zero, NaN, infinity, huge integers, empty strings, unknown names), applied to
`sim.jobs.default_config(workload)`. Each config either validates or is refused with one
`ConfigError` line that names a setting by its dotted path (the drawn one, when its value is
of the wrong kind): never another exception. A bounded subset of those that validate then runs
at tiny sizes, in process, and ends with finite results or a refusal before anything is written.

Deterministic (`derandomize=True`, no example database); the counts of what ran are printed
(`pytest -s`)."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config import COMMON_SECTIONS, ConfigError
from sim.jobs import WORKLOADS, default_config, run, validate

WORKLOAD_NAMES = sorted(WORKLOADS)


def _leaves(section: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, schema annotation, default) of every setting under the dataclass `section`."""
    hints = typing.get_type_hints(type(section))
    out = []
    for f in dataclasses.fields(section):
        if not prefix and f.name == "compared":  # filled by the entry point: not a setting
            continue
        path = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out += _leaves(value, path)
        else:
            out.append((path, hints[f.name], value))
    return out


LEAVES = {w: _leaves(default_config(w)) for w in WORKLOAD_NAMES}
PATHS = {path for leaves in LEAVES.values() for path, _, _ in leaves}
SECTIONS = {p.rsplit(".", 1)[0] for p in PATHS if "." in p}
FREE_FORM = ("fleet.mix.", "fleet.battery_j.", "strategy.params.", "devices.", "workload.app.run_config.")


def _set(cfg, path: str, value) -> None:
    *parts, last = path.split(".")
    node = cfg
    for part in parts:
        node = getattr(node, part)
    setattr(node, last, value)


def _base(hint):
    """(the annotation without Optional, whether null is allowed)."""
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _options(workload: str, path: str) -> list[str]:
    """The names a string setting allows, as its own error says (`allowed: a, b, c`)."""
    cfg = default_config(workload)
    _set(cfg, path, "no such name")
    try:
        validate(cfg)
    except ConfigError as exc:
        m = re.search(r"allowed: ([\w ,.-]+)", str(exc))
        if m:
            return [o.strip() for o in m.group(1).split(",") if o.strip() and o.strip() != "null"]
    return []


OPTIONS = {(w, path): _options(w, path) for w in WORKLOAD_NAMES for path, hint, _ in LEAVES[w] if _base(hint)[0] is str}

# values of the wrong kind for a setting of this type (none of them can be right)
WRONG_KIND = {
    int: ["abc", "", [1], {"a": 1}, True, 1.5, math.nan, math.inf],
    float: ["abc", "", [1.0], {"a": 1}, False, math.nan, math.inf, -math.inf],
    bool: ["abc", "", 0, 1, 1.5, [True]],
    str: [1, 1.5, True, [], {"a": "b"}],
    list: ["abc", 1, 1.5, {"a": 1}, [math.nan], ["abc", 1, None]],
    dict: ["abc", 1, [1], {"": 1}, {"a": math.nan}],
}
# of the right kind, but out of any sane range
EXTREME = {
    int: [-1, 0, 2**31, 10**12, 2**64, -(2**70)],
    float: [-1.0, 0.0, -1e-300, 1e300, 10**12, 2**70],
    str: ["", " ", "no such name", "x" * 300],
    list: [[], [0], [-1], [10**12]],
    dict: [{}, {"no such name": 1.0}],
}


def _kind(hint) -> Any:
    base, _ = _base(hint)
    origin = typing.get_origin(base)
    return origin if origin in (list, dict) else base


def _valid_like(workload: str, path: str, hint, default) -> st.SearchStrategy:
    """Values a user might well write: the options a name allows, numbers near the default, null
    where allowed, and the default itself (last: Hypothesis leans to the first choices)."""
    base, optional = _base(hint)
    kind = _kind(hint)
    choices: list[st.SearchStrategy] = []
    if kind is bool:
        choices.append(st.booleans())
    elif kind is int:
        top = max(4, 2 * default) if isinstance(default, int) else 8
        choices.append(st.integers(1, top))
    elif kind is float:
        top = max(1.0, 2 * abs(default)) if isinstance(default, (int, float)) else 1.0
        choices.append(st.floats(0.0, top, allow_nan=False, allow_infinity=False))
    elif kind is str:
        if OPTIONS.get((workload, path)):
            choices.append(st.sampled_from(OPTIONS[(workload, path)]))
    elif kind is list and default:
        element = default[0]
        if isinstance(element, str) and OPTIONS.get((workload, path)):
            choices.append(st.lists(st.sampled_from(OPTIONS[(workload, path)]), min_size=1, max_size=3, unique=True))
        elif isinstance(element, float):
            choices.append(st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=4, unique=True))
        elif isinstance(element, int):
            choices.append(st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True))
    if optional:
        choices.append(st.none())
    choices.append(st.just(copy.deepcopy(default)))
    return st.one_of(choices)


def _wrong_kind(hint) -> list:
    base, optional = _base(hint)
    kind = _kind(hint)
    wrong = list(WRONG_KIND.get(kind, []))
    return wrong if optional or kind is Any else [*wrong, None]


def _is_wrong_kind(path: str, value, hint) -> bool:
    """Whether `value` cannot be a value of the setting (its type, or a NaN or infinity), judged
    apart from the simulator's own check."""
    base, optional = _base(hint)
    if value is None:
        return not optional and base is not Any
    kind = _kind(hint)
    if kind is bool:
        return not isinstance(value, bool)
    if kind is int:
        return isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63
    if kind is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return not number or (isinstance(value, int) and abs(value) >= 2**63) or not math.isfinite(value)
    if kind is str:
        return not isinstance(value, str)
    if kind is list:
        element = typing.get_args(base)[0]
        return not isinstance(value, list) or any(_is_wrong_kind(path, v, element) for v in value)
    if kind is dict:
        if not isinstance(value, dict):
            return True
        if path == "workload.app.run_config":  # the app's own: any values
            return False
        element = typing.get_args(base)[1]
        return any(k == "" or _is_wrong_kind(path, v, element) for k, v in value.items())
    return isinstance(value, float) and not math.isfinite(value)  # Any: free form, but finite


def _invalid(hint) -> st.SearchStrategy:
    kind = _kind(hint)
    return st.sampled_from(_wrong_kind(hint) + EXTREME.get(kind, ["abc", math.nan, 10**12]))


def _used(workload: str) -> list[tuple[str, Any, Any]]:
    """The settings a job of `workload` reads: its own, the common ones and its sections."""
    uses = WORKLOADS[workload].uses | COMMON_SECTIONS
    return [leaf for leaf in LEAVES[workload] if leaf[0].split(".")[0] in uses]


@st.composite
def drawn_configs(draw, workloads=WORKLOAD_NAMES, valid_only: bool = False, max_changes: int = 3):
    """(workload, [(path, value), ...], config with those values set); with `valid_only`, values
    a user might well write, of the settings the workload reads."""
    workload = draw(st.sampled_from(workloads))
    leaves = _used(workload) if valid_only else LEAVES[workload]
    picks = draw(st.lists(st.integers(0, len(leaves) - 1), min_size=1, max_size=max_changes, unique=True))
    changes = []
    for i in picks:
        path, hint, default = leaves[i]
        if path == "workload.name":
            value = draw(st.sampled_from([*WORKLOAD_NAMES, "no such name", ""]))
        elif valid_only:
            value = draw(_valid_like(workload, path, hint, default))
        else:
            value = draw(st.one_of(_valid_like(workload, path, hint, default), _invalid(hint)))
        changes.append((path, value))
    cfg = default_config(workload)
    for path, value in changes:
        _set(cfg, path, value)
    return workload, changes, cfg


def _named(message: str) -> str:
    """The setting an error names: its text before the first `=` or `: `."""
    return re.split(r"=|: ", message, maxsplit=1)[0].lstrip("+~")


def _known(setting: str) -> bool:
    return setting in PATHS or setting in SECTIONS or setting.startswith(FREE_FORM)


COUNTS: dict[str, int] = {"drawn": 0, "valid": 0, "refused": 0, "refused naming the drawn setting": 0}


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(drawn_configs())
def test_a_drawn_config_validates_or_is_one_line_naming_a_setting(drawn) -> None:
    workload, changes, cfg = drawn
    COUNTS["drawn"] += 1
    try:
        validate(cfg)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message, message
        setting = _named(message)
        assert _known(setting), f"{changes}: the error names no setting: {message}"
        COUNTS["refused"] += 1
        drawn_paths = [p for p, _ in changes]
        if setting in drawn_paths or any(setting.startswith(f"{p}.") for p in drawn_paths):
            COUNTS["refused naming the drawn setting"] += 1
        # a value of the wrong kind is named exactly: the type check runs before any other
        if len(changes) == 1 and changes[0][0] != "workload.name":
            path, value = changes[0]
            hint = {p: h for p, h, _ in LEAVES[workload]}[path]
            if _is_wrong_kind(path, value, hint):
                assert setting == path or setting.startswith(f"{path}."), f"{path}={value!r}: {message}"
    except Exception as exc:  # anything else is a bug: a traceback for the user
        pytest.fail(f"{workload} {changes}: {type(exc).__name__}: {exc}")
    else:
        COUNTS["valid"] += 1
        hints = {p: h for p, h, _ in LEAVES[workload]}
        wrong = [(p, v) for p, v in changes if p != "workload.name" and _is_wrong_kind(p, v, hints[p])]
        assert not wrong, f"{workload}: accepted values of the wrong kind {wrong}"


# --- tiny runs of drawn configs that validate ------------------------------------------------
RUNS: dict[str, int] = {"ran": 0, "refused before writing": 0}


def _tiny(workload: str, cfg, cache) -> None:
    """Sizes forced down so that a run takes about a second; the drawn values stay otherwise."""
    cfg.progress, cfg.plots, cfg.tracking, cfg.backend = False, False, "none", "local"
    cfg.cache_dir, cfg.torch_threads = str(cache), 1
    w = cfg.workload
    if workload == "federated":
        w.rounds, w.local_epochs, w.model = min(w.rounds, 2), 1, "mlp"
        w.time_budget_s = None if w.time_budget_s is None else max(w.time_budget_s, 1.0)
        cfg.fleet.num_devices, cfg.fleet.mix = 4, dict(default_config().fleet.mix)
        if cfg.dataset.num_samples is not None:
            cfg.dataset.num_samples = min(cfg.dataset.num_samples, 400)
    elif workload == "offload":
        w.epochs, w.images, w.hidden = 1, min(w.images, 10), min(w.hidden, 32)
    elif workload == "mcpipe":
        w.models, w.fc_hidden, w.fc_depth, w.vgg_widths, w.vgg_hidden = ["fc"], 16, 2, [4], 8
        w.workers, w.partition, w.boundaries = [2], "flops", []
        w.sim_time_s, w.eval_every_s, w.accuracy_at_s = 0.2, 0.1, None
        w.schedules = list(w.schedules)[:2]
        cfg.dataset.name, cfg.dataset.num_samples = "digits", None


def _finite_results(workload: str, summary, cfg) -> None:
    import pandas as pd

    rows = pd.DataFrame(summary)
    assert len(rows), "no summary rows"
    column = {"federated": "final_accuracy", "mcpipe": "final_accuracy", "offload": "accuracy"}[workload]
    if workload == "federated":  # a run may stop early, named (a fleet that is never online): then no rounds
        early = rows[(rows["ended"] != "completed") & (rows["rounds_run"] == 0)]
        assert all(str(e).startswith(("fleet exhausted", "time budget")) for e in early["ended"]), list(early["ended"])
        rows = rows[rows["rounds_run"] > 0]
    accuracy = rows[column].to_numpy(dtype=float)
    assert all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in accuracy), f"{column}: {accuracy}"


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(drawn=drawn_configs(workloads=["federated"] * 8 + ["offload"] * 3 + ["mcpipe"], valid_only=True, max_changes=4))
def test_a_drawn_config_that_validates_runs_to_finite_results(drawn, tmp_path_factory) -> None:
    from hypothesis import assume

    workload, changes, cfg = drawn
    out = tmp_path_factory.mktemp("run")
    _tiny(workload, cfg, out.parent / "cache")
    try:
        validate(cfg)
    except ConfigError:
        assume(False)  # refused: the test above checks how
    try:
        summary = run(cfg, out / "job")
    except ConfigError as exc:  # a check only the data can make (a data set that needs a folder, ...)
        assert "\n" not in str(exc) and _known(_named(str(exc))), str(exc)
        assert not (out / "job").exists() or not any((out / "job").iterdir()), f"{changes}: wrote before refusing"
        RUNS["refused before writing"] += 1
        return
    _finite_results(workload, summary, cfg)
    RUNS["ran"] += 1


def test_report_the_counts(capsys) -> None:
    """The numbers of cases drawn (printed with `pytest -s`; the issue's closing note cites them)."""
    with capsys.disabled():
        print(f"\nproperty test: validation {COUNTS}; tiny runs {RUNS}")
    if COUNTS["drawn"]:
        assert COUNTS["refused"] and COUNTS["valid"]
