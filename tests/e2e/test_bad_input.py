"""A value of the wrong type or a key that does not exist: one line naming the override as the
user wrote it, exit status 2, nothing written (Hydra alone gives several lines, exit 1, and a
run folder)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("channel.ber=abc", "error: channel.ber=abc: Value 'abc' of type 'str' could not be converted to Float"),
        ("workload.rounds=2.5", "error: workload.rounds=2.5: Value '2.5' of type 'float' could not be converted"),
        ("chanel.ber=0.1", "error: chanel.ber=0.1: Key 'chanel' not in 'Config'"),
        ("fleet.num_devices=1e12", "error: fleet.num_devices=1e12: Value '1000000000000.0' of type 'float'"),
        ("fleet.mix={odroid_xu4:x}", "error: fleet.mix={odroid_xu4:x}: Value 'x' of type 'str' could not be converted"),
    ],
)
def test_wrong_type_or_unknown_key_is_one_line(override: str, message: str, run_sim, tmp_path):
    res = run_sim(override, "progress=false")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_the_same_in_a_workloads_own_section(run_sim, tmp_path):
    res = run_sim("+experiment=nonn", "workload.lr=abc")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: workload.lr=abc: Value 'abc' of type 'str' could not be converted to Float"
    ]


def test_a_transfer_that_gives_up_still_counts_its_bytes_on_the_air(run_sim, tmp_path):
    import pandas as pd

    out = tmp_path / "r"
    tiny = ["workload.rounds=1", "workload.model=mlp", "fleet.num_devices=4", "progress=false", "plots=false"]
    res = run_sim(*tiny, "channel.ber=3e-3", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-1500:]
    clients = pd.read_csv(out / "clients.csv")
    lost = clients[clients["status"] == "lost_down"]
    assert len(lost) and (lost["attempts_down"] >= 8).all()
    # every attempt went out with its header: at least attempts x (header + some payload) bytes
    assert (lost["bytes_down"] >= lost["attempts_down"] * 17).all()
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["bytes_down"].sum() == clients["bytes_down"].sum()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["workload.momentum=-1"], "error: workload.momentum=-1.0: allowed range is [0, 1)"),
        (["workload.lr_decay=-1"], "error: workload.lr_decay=-1.0: allowed range is (0, 1]"),
        (["workload.weight_decay=-1"], "error: workload.weight_decay=-1.0: must be >= 0"),
        (["workload.model=nosuch"], "error: workload.model='nosuch': allowed: cnn, fedmax_cifar_cnn, mlp"),
        (["seed=-1"], "error: seed=-1: allowed range is 0 .. 2**32 - 1"),
        (["seed=4294967296"], "error: seed=4294967296: allowed range is 0 .. 2**32 - 1"),
        (["log_level=FOO"], "error: log_level='FOO': allowed: DEBUG, INFO"),
        (["fleet.mix={nosuch:1}"], "error: fleet.mix: unknown device profile 'nosuch'; allowed: cortex_m7_512kb, "),
        (
            ["dataset.partition=shards", "dataset.shards_per_client=100000"],
            "error: dataset.shards_per_client=100000: 30 devices x 100000 shards exceed the 1437 training images",
        ),
        (
            ["workload.app.server=math:pi", "workload.app.client=math:pi"],
            "error: workload.app.server='math:pi': is a float, not a Flower ServerApp",
        ),
    ],
)
def test_values_that_ran_silently_wrong_are_refused(overrides, message, run_sim, tmp_path):
    res = run_sim(*overrides, "workload.rounds=1", "progress=false")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_checks_every_job_before_the_first_runs(run_sim, tmp_path):
    tiny = ["workload.rounds=1", "workload.model=mlp", "fleet.num_devices=4", "progress=false", "plots=false"]
    res = run_sim("-m", *tiny, "seed=0,1", "channel.ber=0,0.9", f"hydra.sweep.dir={tmp_path / 's'}")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: channel.ber=0.9: allowed range is [0, 0.5] (in the sweep's job ")
    assert not (tmp_path / "s").exists()  # job 1 (seed 0, ber 0) never ran


def _elsewhere(tmp_path):
    """A run folder outside the command's working folder (`run_sim` runs in `tmp_path`)."""
    return tmp_path.parent / f"{tmp_path.name}-elsewhere" / "runs" / "r"


def _mnist_not_gzip(tmp_path):
    folder = tmp_path.parent / f"{tmp_path.name}-mnist"
    folder.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (folder / f"{name}.gz").write_bytes(b"this is not gzip")
    return folder


APP = [
    "workload.app.server=tests.quickstart_app.server_app:app",
    "workload.app.client=tests.quickstart_app.client_app:app",
    "fleet.num_devices=4",
    "fleet.availability=1",
    "strategy.timeout_s=null",
]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            ["fleet.num_devices=1000000000000"],
            "error: fleet.num_devices=1000000000000: at most 1,000,000 devices (each holds ~200 bytes",
        ),
        (
            ["fleet.num_devices=1e12"],
            "error: fleet.num_devices=1e12: Value '1000000000000.0' of type 'float' could not be converted to "
            "Integer; and as the integer 1000000000000: at most 1,000,000 devices",
        ),
        (["+experiment=nonn", "workload.lr=inf"], "error: workload.lr=inf: must be a finite number"),
        (["+experiment=dream", "workload.lr=inf"], "error: workload.lr=inf: must be a finite number"),
        (
            ["+experiment=mcpipe", "workload.microbatch=100000"],
            "error: workload.microbatch=100000: at most 1437 (the training images of dataset.name='digits'",
        ),
        (["dataset=mnist", "dataset.path=MNIST"], "error: dataset.path=MNIST: MNIST/train-images-idx3-ubyte.gz: not a"),
        (
            [*APP, "workload.app.run_config.lr=0.1"],
            "error: workload.app.run_config.fraction-train: workload.app.server='tests.quickstart_app.server_app:app' "
            "reads it, but the run config does not give it; add workload.app.run_config.fraction-train=VALUE",
        ),
    ],
    ids=[
        "num_devices=10**12",
        "num_devices=1e12",
        "nonn-lr-inf",
        "dream-lr-inf",
        "mcpipe-microbatch",
        "mnist-not-gzip",
        "run_config-lacks-key",
    ],
)
def test_what_crashed_hung_or_ran_for_minutes_is_one_line_and_leaves_no_folder(case, message, run_sim, tmp_path):
    """Each was a traceback (exit 1), a run of minutes, or a hang; and a run folder outside the
    working folder (hydra.run.dir) was left behind even when the error was one line."""
    if "dataset.path=MNIST" in case:
        folder = _mnist_not_gzip(tmp_path)
        case = [a.replace("MNIST", str(folder)) for a in case]
        message = message.replace("MNIST", str(folder))
    out = _elsewhere(tmp_path)
    res = run_sim(*case, "progress=false", f"hydra.run.dir={out}")
    assert res.returncode == 2, res.stderr[-2000:]
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(message), line
    assert not out.parent.parent.exists()  # neither the run folder nor the parents Hydra made for it
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_existed_before_is_kept(run_sim, tmp_path):
    out = _elsewhere(tmp_path)
    out.parent.mkdir(parents=True)
    res = run_sim("seed=-1", f"hydra.run.dir={out}")
    assert res.returncode == 2
    assert not out.exists() and out.parent.is_dir()  # the run's own folder went; the user's stays


# --- drawn bad overrides, through the command line ---------------------------------------------
# values as a user types them: wrong types, negatives, zero, NaN, infinity, huge numbers, empty
# strings, unknown names, a list or mapping where a value goes
CLI_VALUES = [
    "abc",
    "''",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e12",
    "1000000000000",
    "18446744073709551616",
    "nosuch",
    "[1]",
    "{a: 1}",
    "null",
    "2.5",
]


def _refused_in_process(args: list[str]) -> bool:
    """Whether the command line's checks refuse `args` (composed and validated as `python -m sim`
    does, in this process: fast), so that the drawn cases sent to a subprocess are bad ones."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import sim.__main__ as entry
    from sim.config import ConfigError
    from sim.jobs import refuse_unknown, refuse_unused, validate

    opened = [f"++{a}" if a.startswith(entry.OPEN_KEYS) else a for a in args]
    try:
        with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
            cfg = OmegaConf.to_object(compose(config_name="config", overrides=opened))
            refuse_unknown(cfg, opened)
            refuse_unused(cfg, opened)
            cfg.compared = entry.compared_params(cfg)
        validate(cfg)
    except ConfigError:
        return True
    except Exception:  # Hydra's and OmegaConf's own: a wrong type, an unknown key
        return True
    return False


def _bad_overrides(count: int) -> list[list[str]]:
    """`count` command lines, each one drawn setting of a workload set to a drawn bad value, that
    the checks refuse (Hypothesis draws; deterministic)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.unit.test_property_settings import WORKLOAD_NAMES, _used

    found: list[list[str]] = []

    @st.composite
    def command(draw):
        workload = draw(st.sampled_from(WORKLOAD_NAMES))
        path = draw(st.sampled_from([p for p, _, _ in _used(workload) if p != "workload.name"]))
        value = draw(st.sampled_from(CLI_VALUES))
        return ([] if workload == "federated" else [f"workload={workload}"]) + [f"{path}={value}"]

    @settings(max_examples=200, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(command())
    def draw(args):
        key = args[-1].partition("=")[0]  # one case per setting
        if len(found) < count and key not in {a[-1].partition("=")[0] for a in found} and _refused_in_process(args):
            found.append(args)

    draw()
    return found


def test_drawn_bad_overrides_exit_2_with_one_line_and_no_folder(tmp_path):
    from ..conftest import finish, start_sim

    cases = _bad_overrides(10)
    assert len(cases) == 10
    results = []
    for batch in (cases[i : i + 3] for i in range(0, len(cases), 3)):  # 3 at a time: 2 cores
        procs = []
        for i, args in enumerate(batch, start=len(results)):
            cwd = tmp_path / f"cwd{i}"
            cwd.mkdir()
            out = tmp_path / f"elsewhere{i}" / "r"
            procs.append((args, cwd, out, start_sim([*args, "progress=false", f"hydra.run.dir={out}"], cwd)))
        results += [(args, cwd, out, finish(p, 300)) for args, cwd, out, p in procs]
    for args, cwd, out, res in results:
        assert res.returncode == 2, f"{args}: exit {res.returncode}: {res.stderr[-1500:]}"
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {args[-1].partition('=')[0]}"), res.stderr[-1500:]
        assert not out.parent.exists() and list(cwd.iterdir()) == [], f"{args}: left a folder"
    print(f"\ndrawn bad overrides run through `python -m sim`: {[' '.join(a) for a, *_ in results]}")
