"""`edgesim --help` / `python -m sim --help`: every config group's options and every setting with
its default and its meaning, read from the schemas themselves (the dataclasses the configs are
typed by and validated against, and the comment each field carries), so the help cannot drift
from what runs. `--help workload=NAME` shows that workload's own settings."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize

from sim.start import CONF_DIR

__all__ = ["help_text"]


def _comments(cls: type) -> dict[str, str]:
    """field name -> its comment: the one on its line, else the comment lines just above it."""
    src = inspect.getsource(cls)
    trailing: dict[int, str] = {}  # a comment after code on its line
    alone: dict[int, str] = {}  # a line that is only a comment
    for tok in tokenize.generate_tokens(io.StringIO(textwrap.dedent(src)).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            (alone if tok.line.strip().startswith("#") else trailing)[tok.start[0]] = text
    tree = ast.parse(textwrap.dedent(src)).body[0]
    out = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = [trailing[ln] for ln in range(node.lineno, node.end_lineno + 1) if ln in trailing]
            above, ln = [], node.lineno - 1
            while ln in alone:
                above.insert(0, alone[ln])
                ln -= 1
            out[node.target.id] = " ".join(text or above)
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _settings(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    lines, notes = [], {}
    for klass in reversed(cls.__mro__[:-1]):  # inherited fields' comments too
        if dataclasses.is_dataclass(klass):
            notes.update(_comments(klass))
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        value = _default(f)
        if dataclasses.is_dataclass(value):
            lines += _settings(type(value), f"{prefix}{f.name}.")
            continue
        shown = "null" if value is None else value
        lines.append(f"  {prefix}{f.name}={shown}" + (f"    # {notes[f.name]}" if notes.get(f.name) else ""))
    return lines


def _options(group: str) -> list[str]:
    lines = []
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("# ")), "")
        if path.stem.endswith("_schema"):
            continue
        lines.append(f"  {group}={path.stem}" + (f"    # {first}" if first and not first.startswith("@") else ""))
    return lines


def help_text(argv: list[str]) -> str:
    from sim.config import ChannelConfig, Config, DatasetConfig, FleetConfig, RayConfig, StrategyConfig
    from sim.jobs import WORKLOADS

    chosen = next((a.split("=", 1)[1] for a in argv if a.startswith("workload=")), "federated")
    if chosen not in WORKLOADS:
        chosen = "federated"
    w = WORKLOADS[chosen]
    parts = [
        "edgesim: deep learning on simulated networks of small devices.",
        "",
        "usage: edgesim [+experiment=NAME] [group=OPTION ...] [key=value ...]   (also: python -m sim ...)",
        "       edgesim -m key=v1,v2 ...   a sweep into one comparison.csv",
        "       edgesim --help workload=NAME   that workload's settings",
        "",
        "== Ready-made experiments (+experiment=NAME) ==",
        *_options("experiment"),
        "",
        "== Config groups (group=OPTION) ==",
        *(line for g in ("workload", "fleet", "channel", "strategy", "dataset") for line in _options(g)),
        "",
        "== Common settings ==",
        *_settings(Config, "", skip=("fleet", "channel", "strategy", "dataset", "workload", "ray", "compared")),
        *_settings(RayConfig, "ray."),
    ]
    for name, cls in (("fleet", FleetConfig), ("channel", ChannelConfig), ("strategy", StrategyConfig)):
        if name in w.uses:
            parts += ["", f"== {name}.* ==", *_settings(cls, f"{name}.")]
    if "dataset" in w.uses:
        parts += ["", "== dataset.* ==", *_settings(DatasetConfig, "dataset.")]
    parts += ["", f"== workload.* of workload={chosen} ==", *_settings(w.schema, "workload.")]
    parts += ["", "Bad values are refused with a one-line error naming the setting (exit status 2)."]
    return "\n".join(parts)
