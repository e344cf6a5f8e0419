"""A Flower app folder as `flwr run DIR` takes it (`workload.app.path=DIR`): its pyproject.toml's
`[tool.flwr.app.components]` name the ServerApp and ClientApp, `[tool.flwr.app.config]` the run
config (nested tables flattened to dotted keys, as Flower does), which `workload.app.run_config.KEY=V`
on the command line overrides; the folder is importable wherever the command runs (this process
and, through PYTHONPATH, Ray's workers)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sim.config import Config, ConfigError

__all__ = ["MissingRunConfigKey", "RunConfig", "missing_key_error", "missing_key_of", "resolve_app"]


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resolve_app(cfg: Config) -> None:
    """Fill `workload.app.server`, `.client` and `.run_config` from the app folder `.path` (the
    command line's own values win), and make the folder importable; nothing without a path."""
    app = cfg.workload.app
    if app.path is None:
        return
    folder = Path(app.path).expanduser().resolve()
    toml = folder / "pyproject.toml"
    if not toml.is_file():
        raise ConfigError(
            f"workload.app.path={app.path!r}: no pyproject.toml there (a Flower app folder, as flwr new makes)"
        )
    import tomllib  # an app folder's only

    try:
        meta = tomllib.loads(toml.read_text()).get("tool", {}).get("flwr", {}).get("app", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"workload.app.path={app.path!r}: {toml.name} is not valid TOML ({exc})") from None
    parts = meta.get("components", {})
    for key in ("serverapp", "clientapp"):
        if not isinstance(parts.get(key), str):
            raise ConfigError(
                f"workload.app.path={app.path!r}: {toml.name} has no [tool.flwr.app.components] {key} = 'module:attr'"
            )
    app.server = app.server or parts["serverapp"]
    app.client = app.client or parts["clientapp"]
    app.run_config = {**_flat(meta.get("config", {})), **dict(app.run_config)}
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        paths = [str(folder), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


class MissingRunConfigKey(KeyError):
    """A key an app read from `context.run_config` that the run config does not give: still a
    KeyError to the app (which may catch it and use a default), and, if it escapes the app, a
    setting the user has to give."""


class RunConfig(dict):
    """The run config an app's `Context` carries: a plain dict whose missing keys raise
    `MissingRunConfigKey` (pickled by value to Ray's workers as a dict is)."""

    def __missing__(self, key):
        raise MissingRunConfigKey(key)


def missing_key_error(key: Any, app: str, setting: str) -> ConfigError:
    """The one-line error for the run-config key `key` that the app `app` (`setting`) read and
    the run config lacks."""
    return ConfigError(
        f"workload.app.run_config.{key}: {setting}={app!r} reads it, but the run config does not give it; "
        f"add workload.app.run_config.{key}=VALUE (or to the app's pyproject.toml [tool.flwr.app.config])"
    )


def missing_key_of(error: str) -> Any:
    """The key of an `Execution.error` text that says a ClientApp read a run-config key the run
    config lacks (`MissingRunConfigKey: 'batch-size'`, from any back end), else None."""
    import ast

    prefix = f"{MissingRunConfigKey.__name__}: "
    if not error.startswith(prefix):
        return None
    try:
        return ast.literal_eval(error.removeprefix(prefix))
    except (ValueError, SyntaxError):
        return error.removeprefix(prefix)
