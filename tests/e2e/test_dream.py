"""The Dream Distillation job end to end, small: every source and phase reported, the dream path
sealed from the real images, the teacher shared with NoNN's cache, byte-identical reruns."""

from __future__ import annotations

import pandas as pd
import pytest

import experiments.dream.guard as guard
import sim.dream.dreams as dream_job
from sim.jobs import default_config, run


def _cfg(tmp_path):
    cfg = default_config("dream")
    cfg.progress, cfg.plots = False, False
    cfg.cache_dir = str(tmp_path / "cache")
    d = cfg.workload
    d.teacher_width, d.teacher_epochs = 1.0, 1
    d.images, d.steps, d.student_epochs, d.student_widths = 40, 3, 1, [0.25]
    return cfg


@pytest.fixture(scope="module")
def dream_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dream")
    seen = []
    original = dream_job.dream_images

    def watched(*args, **kwargs):  # the generation runs sealed from the real images
        seen.append(guard._SEALED[0])
        return original(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(dream_job, "dream_images", watched)
    try:
        run(_cfg(tmp), tmp / "out")
    finally:
        mp.undo()
    return tmp, seen


def test_every_source_is_distilled_and_reported(dream_out) -> None:
    tmp, _ = dream_out
    students = pd.read_csv(tmp / "out" / "students.csv")
    assert students.source.tolist() == ["random", "dream", "alternate", "real"]
    assert (students.images == 40).sum() == 3  # random, dream, alternate: N; real: the training set
    assert students.test_accuracy.between(0, 1).all() and (students.distill_flops > 0).all()
    meta = pd.read_csv(tmp / "out" / "metadata.csv").iloc[0]
    assert meta.metadata_bytes > 0 and meta.sample_bytes > 0 and meta.dream_flops > 0
    # what the teacher makes of the dreams and of the noise, and how the dreams look beside real images
    assert 0 <= meta.dream_teacher_agreement <= 1 and 1 <= meta.random_teacher_classes <= 10
    assert 0 < meta.dream_pixel_mean < 1 and 0 < meta.sample_pixel_mean < 1


def test_phases_run_in_order_on_the_clock(dream_out) -> None:
    tmp, _ = dream_out
    phases = pd.read_csv(tmp / "out" / "phases.csv")
    assert phases.phase.tolist() == ["metadata", "generate"] + ["distill"] * 4
    assert (phases.start_s.iloc[1:].to_numpy() == phases.end_s.iloc[:-1].to_numpy()).all()
    assert (phases.end_s > phases.start_s).all()
    meta = phases.iloc[0]
    assert meta.bytes >= pd.read_csv(tmp / "out" / "metadata.csv").metadata_bytes.iloc[0]
    assert meta.owner_energy_j > 0 and (phases.server_energy_j.iloc[1:] > 0).all()


def test_the_generation_ran_sealed(dream_out) -> None:
    _, seen = dream_out
    assert seen == [True]


def test_same_config_same_csvs_and_the_teacher_is_nonns(dream_out, tmp_path) -> None:
    tmp, _ = dream_out
    cfg = _cfg(tmp)  # the same cache: teacher, dreams and students come back from it
    run(cfg, tmp_path / "again")
    for name in ("students.csv", "metadata.csv", "phases.csv", "summary.csv", "timeline.csv"):
        assert (tmp / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    nonn = default_config("nonn").workload
    for key in ("teacher_depth", "val_fraction", "batch_size", "lr", "momentum", "weight_decay"):
        assert getattr(nonn, key) == getattr(default_config("dream").workload, key)
    assert (
        (nonn.teacher_width, nonn.teacher_epochs)
        == (4.0, 15)
        == (
            default_config("dream").workload.teacher_width,
            default_config("dream").workload.teacher_epochs,
        )
    )


def test_nonn_students_learn_from_dreams_alone(tmp_path, monkeypatch) -> None:
    """`nonn.data=dream`: every student and baseline trains on the teacher's dreams (labelled by
    their targets' classes), the dreams shared with the dream workload's cache entry."""
    import experiments.nonn.pipeline as pipeline

    cfg = default_config("nonn")
    cfg.progress, cfg.plots, cfg.cache_dir = False, False, str(tmp_path / "cache")
    n = cfg.workload
    n.teacher_width, n.teacher_epochs, n.student_epochs, n.timing_images, n.calibrate = 1.0, 1, 1, 2, False
    n.beta_search, n.at_beta_search = [100.0], []
    n.data, n.dream.images, n.dream.steps = "dream", 40, 3
    seen = []
    original = pipeline.train_cached

    def watched(executor, cache_dir, trainings):
        seen.extend((t.kind, len(t.args[0])) for t in trainings)
        return original(executor, cache_dir, trainings)

    monkeypatch.setattr(pipeline, "train_cached", watched)
    s = run(cfg, tmp_path / "nonn").iloc[0]
    assert s.student_data == "dream" and 0 <= s.nonn_accuracy <= 1
    teacher_images = seen[0][1]
    assert seen[0][0] == "nonn-teacher" and teacher_images > 40
    assert [k for _, k in seen[1:]] == [40] * 4  # the NoNN, KD-only NoNN, KD and ATKD students: 40 dreams each
    # the dream workload with the same teacher and generation settings finds those dreams cached
    dreams = sorted(p.name for p in (tmp_path / "cache").glob("dreams-*.pt"))
    d = _cfg(tmp_path)
    d.workload.teacher_width, d.workload.sources = 1.0, ["dream"]
    run(d, tmp_path / "dream")
    assert sorted(p.name for p in (tmp_path / "cache").glob("dreams-*.pt")) == dreams


def test_bad_nested_dream_setting_names_it(tmp_path) -> None:
    from sim.config import ConfigError
    from sim.jobs import validate

    cfg = default_config("nonn")
    cfg.workload.dream.clusters = 0
    with pytest.raises(ConfigError, match=r"workload\.dream\.clusters"):
        validate(cfg)
