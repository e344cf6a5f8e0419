"""The YAML a job writes of its settings (the run folder's state, `config.yaml`, report.html's
settings), each text rendered once per distinct settings tree.

PyYAML costs a job's process ~20 ms of a small run (~9 ms to import, a few ms for each text its
pure-Python emitter writes). A split command's line (`sim.split`) has PyYAML loaded already
(OmegaConf's) and waits idle while the job's process imports torch, so before it sends the job
it renders the texts the job will write (`sim.jobs.render_settings`) and sends them along
(`rendered`); the job's process takes them (`take`) and finds each text by its tree, rendering
(and importing PyYAML) only one the command line did not foresee (a compared strategy's
`config.yaml`). In one process nothing changes but the memo. The texts are the same, byte for
byte, wherever they are rendered: the same emitter (`yaml.SafeDumper`), the same tree.
"""

from __future__ import annotations

__all__ = ["dump", "rendered", "take"]

_texts: dict[tuple, str] = {}


def _key(tree: dict, style: dict) -> tuple:
    # repr tells apart what YAML would (1 from 1.0 from '1', the order of a dict's keys)
    return repr(tree), tuple(sorted(style.items()))


def dump(tree: dict, **style) -> str:
    """`yaml.safe_dump(tree, **style)`, rendered here only if it was not already."""
    key = _key(tree, style)
    text = _texts.get(key)
    if text is None:
        import yaml

        text = _texts[key] = yaml.safe_dump(tree, **style)
    return text


def rendered() -> dict[tuple, str]:
    """Every text rendered so far (to send with a job to the process that will write them)."""
    return dict(_texts)


def take(texts: dict[tuple, str]) -> None:
    """Texts rendered in another process (`rendered`), for `dump` to find."""
    _texts.update(texts)
