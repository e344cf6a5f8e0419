"""`sim.yamltext`: the YAML of a job's settings, rendered ahead and taken from another process
as it was rendered there; the texts are those PyYAML writes, byte for byte."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from sim import jobs, yamltext
from sim.html import settings_text as shown
from sim.runfolder import PRESENTATION, settings_text


@pytest.fixture(autouse=True)
def _nothing_taken():
    saved = dict(yamltext._taken)
    yamltext._taken.clear()
    yield
    yamltext._taken.clear()
    yamltext._taken.update(saved)


@pytest.mark.parametrize("workload", sorted(jobs.WORKLOADS))
def test_the_texts_are_pyyamls_and_the_state_reads_back_as_it_was_written(workload) -> None:
    cfg = jobs.default_config(workload)
    tree = dataclasses.asdict(cfg)
    assert shown(cfg) == yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=100)
    state = {k: v for k, v in tree.items() if k not in PRESENTATION}
    # what the run folder wrote before: the tree read back from its YAML, written again
    assert settings_text(cfg) == yaml.safe_dump(yaml.safe_load(yaml.safe_dump(state, sort_keys=True)), sort_keys=True)
    assert jobs.render_settings(cfg) == {
        yamltext._key(state, {"sort_keys": True}): settings_text(cfg),
        yamltext._key(tree, {"sort_keys": False, "default_flow_style": None, "width": 100}): shown(cfg),
    }


def test_a_text_taken_from_another_process_is_not_rendered_again() -> None:
    cfg = jobs.default_config()
    sent = jobs.render_settings(cfg)
    assert len(sent) == 2  # settings.yaml's and report.html's (a single strategy's config.yaml too)
    yamltext.take({key: f"as rendered there: {n}" for n, key in enumerate(sent)})
    assert {settings_text(cfg), shown(cfg)} == {"as rendered there: 0", "as rendered there: 1"}


def test_trees_that_differ_only_in_a_type_or_an_order_are_told_apart() -> None:
    with yamltext.recording() as texts:
        assert yamltext.dump({"a": 1}) != yamltext.dump({"a": 1.0}) != yamltext.dump({"a": "1"})
        assert yamltext.dump({"a": 1, "b": 2}, sort_keys=False) != yamltext.dump({"b": 2, "a": 1}, sort_keys=False)
        assert yamltext.dump({"a": 1}, width=100) == yamltext.dump({"a": 1}, width=100)
    assert len(texts) == 6


def test_one_process_keeps_nothing_between_jobs() -> None:
    # a sweep's jobs run one after another in one process: no text outlives its job
    yamltext.dump({"seed": 0})
    assert yamltext._taken == {} and yamltext._recording is None
