"""`sim.yamltext`: the YAML of a job's settings, rendered once per tree and taken from another
process as it was rendered there; the texts are those PyYAML writes, byte for byte."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from sim import jobs, yamltext
from sim.html import settings_text as shown
from sim.runfolder import PRESENTATION, settings_text


@pytest.fixture(autouse=True)
def _memo_emptied():
    saved = dict(yamltext._texts)
    yamltext._texts.clear()
    yield
    yamltext._texts.clear()
    yamltext._texts.update(saved)


@pytest.mark.parametrize("workload", sorted(jobs.WORKLOADS))
def test_the_texts_are_pyyamls_and_the_state_reads_back_as_it_was_written(workload) -> None:
    cfg = jobs.default_config(workload)
    tree = dataclasses.asdict(cfg)
    assert shown(cfg) == yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=100)
    state = {k: v for k, v in tree.items() if k not in PRESENTATION}
    # what the run folder wrote before the memo: the tree read back from its YAML, written again
    assert settings_text(cfg) == yaml.safe_dump(yaml.safe_load(yaml.safe_dump(state, sort_keys=True)), sort_keys=True)


def test_a_text_taken_from_another_process_is_not_rendered_again() -> None:
    cfg = jobs.default_config()
    jobs.render_settings(cfg)
    sent = yamltext.rendered()
    assert len(sent) == 2  # settings.yaml's and report.html's (a single strategy's config.yaml too)
    yamltext._texts.clear()
    yamltext.take({key: f"as rendered there: {n}" for n, key in enumerate(sent)})
    assert {settings_text(cfg), shown(cfg)} == {"as rendered there: 0", "as rendered there: 1"}


def test_trees_that_differ_only_in_a_type_or_an_order_are_told_apart() -> None:
    assert yamltext.dump({"a": 1}) != yamltext.dump({"a": 1.0}) != yamltext.dump({"a": "1"})
    assert yamltext.dump({"a": 1, "b": 2}, sort_keys=False) != yamltext.dump({"b": 2, "a": 1}, sort_keys=False)
    assert yamltext.dump({"a": 1}, width=100) == yamltext.dump({"a": 1}, width=100)
    assert len(yamltext.rendered()) == 6
