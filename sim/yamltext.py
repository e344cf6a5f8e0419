"""The YAML a job writes of its settings (the run folder's state, `config.yaml`, report.html's
settings), rendered ahead by a split command's line.

PyYAML costs a job's process ~20 ms of a small run (~9 ms to import, a few ms for each text its
pure-Python emitter writes). A split command's line (`sim.split`) has PyYAML loaded already
(OmegaConf's) and waits idle while the job's process imports torch, so before it sends the job
it renders the texts the job will write (`sim.jobs.render_settings`, under `recording`) and
sends them along; the job's process takes them (`take`) and finds each text by its tree,
rendering (and importing PyYAML) only one the command line did not foresee (a compared
strategy's `config.yaml`). In one process, `dump` is `yaml.safe_dump` and keeps nothing (a
sweep's jobs run one after another there). The texts are the same, byte for byte, wherever they
are rendered: the same emitter (`yaml.SafeDumper`), the same tree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["dump", "recording", "take"]

_taken: dict[tuple, str] = {}  # texts rendered by the command line for this process's job
_recording: dict[tuple, str] | None = None


def _key(tree: dict, style: dict) -> tuple:
    # repr tells apart what YAML would (1 from 1.0 from '1', the order of a dict's keys)
    return repr(tree), tuple(sorted(style.items()))


def dump(tree: dict, **style) -> str:
    """`yaml.safe_dump(tree, **style)`: a text taken from the command line if it rendered this
    one, else rendered here (and recorded, inside `recording`)."""
    if not _taken and _recording is None:
        import yaml

        return yaml.safe_dump(tree, **style)
    key = _key(tree, style)
    text = _taken.get(key)
    if text is None:
        import yaml

        text = yaml.safe_dump(tree, **style)
    if _recording is not None:
        _recording[key] = text
    return text


@contextlib.contextmanager
def recording() -> Iterator[dict[tuple, str]]:
    """The texts `dump` renders inside the block, by key (to send with a job to the process
    that will write them)."""
    global _recording
    _recording = texts = {}
    try:
        yield texts
    finally:
        _recording = None


def take(texts: dict[tuple, str]) -> None:
    """Texts rendered in another process (`recording`), for `dump` to find."""
    _taken.update(texts)
