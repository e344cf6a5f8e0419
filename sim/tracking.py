"""Experiment tracking (`tracking=mlflow` or `tracking=tensorboard`): a run's settings, its
per-round metrics, its summary figures and its report files, logged after the job wrote them
and read from those files, so what a tracker shows is what the CSVs hold. One tracked run per
job; a job that compares strategies prefixes each one's metrics with its name. A tracker's write
that fails (its store or event files: disk full, no permission) is an `OutputError`, as any output's."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

from sim.config import Config
from sim.report import OutputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["track"]


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = str(v)
    return out


def _numbers(row: dict) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if isinstance(v, (bool, int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[str(k)] = float(v)
    return out


def _groups(out_dir: Path) -> list[tuple[str, dict[str, float], pd.DataFrame | None]]:
    """Per summary.csv the job wrote: (its name prefix, its numeric figures, its rounds.csv)."""
    import pandas as pd  # only when a tracker is asked for

    found = []
    paths = sorted(out_dir.rglob("summary.csv"), key=lambda p: (len(p.parts), str(p)))
    for path in paths:
        rel = path.parent.relative_to(out_dir)
        summary = pd.read_csv(path)
        rounds = path.with_name("rounds.csv")
        for i, row in enumerate(summary.to_dict("records")):
            name = "/".join(rel.parts)
            if len(summary) > 1:  # a row per method or mode: name it by its first text column
                label = next((str(v) for v in row.values() if isinstance(v, str)), str(i))
                name = f"{name}/{label}" if name else label
            found.append((name, _numbers(row), pd.read_csv(rounds) if rounds.exists() else None))
    return found


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def track(cfg: Config, out_dir: Path | str, title: str) -> None:
    """Log the job `cfg` that wrote `out_dir` to the tracker `cfg.tracking` names."""
    if cfg.tracking == "none":
        return
    out_dir = Path(out_dir)
    params = _flat(dataclasses.asdict(cfg))
    groups = _groups(out_dir)
    try:
        if cfg.tracking == "mlflow":
            _mlflow(cfg, out_dir, title, params, groups)
        else:
            _tensorboard(cfg, out_dir, title, params, groups)
    except OSError as exc:  # the tracker's own writes (its store, its event files): as any output's
        default = "mlruns" if cfg.tracking == "mlflow" else out_dir / "tensorboard"
        raise OutputError(exc.filename or cfg.tracking_uri or default, exc) from None


def _mlflow(cfg: Config, out_dir: Path, title: str, params: dict, groups) -> None:
    import mlflow

    if cfg.tracking_uri:
        mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment("edgesim")
    with mlflow.start_run(run_name=title):
        mlflow.log_params({k: v[:6000] for k, v in params.items()})
        mlflow.set_tag("output_dir", str(out_dir.resolve()))
        for prefix, figures, rounds in groups:
            mlflow.log_metrics({_key(prefix, k): v for k, v in figures.items()})
            if rounds is not None and "round" in rounds:
                for row in rounds.to_dict("records"):
                    step = int(row["round"])
                    values = {_key(prefix, f"round/{k}"): v for k, v in _numbers(row).items() if k != "round"}
                    mlflow.log_metrics(values, step=step)
        mlflow.log_artifacts(str(out_dir))


def _tensorboard(cfg: Config, out_dir: Path, title: str, params: dict, groups) -> None:
    import numpy as np
    from PIL import Image
    from tensorboardX import SummaryWriter

    log_dir = Path(cfg.tracking_uri) if cfg.tracking_uri else out_dir / "tensorboard"
    with SummaryWriter(logdir=str(log_dir)) as w:
        w.add_text("run", title)
        w.add_text("settings", "\n".join(f"    {k}: {v}" for k, v in params.items()))
        for prefix, figures, rounds in groups:
            for k, v in figures.items():
                w.add_scalar(_key(prefix, f"summary/{k}"), v, 0)
            if rounds is not None and "round" in rounds:
                for row in rounds.to_dict("records"):
                    for k, v in _numbers(row).items():
                        if k != "round":
                            w.add_scalar(_key(prefix, k), v, int(row["round"]))
        for png in sorted(out_dir.rglob("*.png")):
            image = np.asarray(Image.open(png).convert("RGB"))
            w.add_image(str(png.relative_to(out_dir)), image, 0, dataformats="HWC")
