"""Bad values refused in process, before anything runs or is written: `sim.jobs.validate` (and,
for what only the data can say, the job's own checks before its first write) raises one
`ConfigError` line naming the setting as the user writes it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.common.data import load_cifar10, load_mnist
from sim.config import ConfigError
from sim.jobs import default_config, run, validate

LR = {"federated": "lr", "nonn": "lr", "nair": "lr", "mcpipe": "lr", "offload": "lr", "dream": "lr"}


def _refused(cfg, setting: str) -> str:
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{setting}="), message
    return message


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1.0, 0.0])
@pytest.mark.parametrize("workload", sorted(LR))
def test_every_workloads_learning_rate_is_finite_and_positive(workload: str, value: float) -> None:
    cfg = default_config(workload)
    setattr(cfg.workload, LR[workload], value)
    _refused(cfg, f"workload.{LR[workload]}")


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("workload.dream", "dream_lr"),
        ("workload", "momentum"),
        ("workload", "temperature"),
        ("workload", "teacher_width"),
        ("channel", "latency_s"),
        ("channel", "bad_ber"),
        ("fleet", "online_s"),
    ],
)
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_no_float_setting_takes_nan_or_infinity(section: str, name: str, value: float) -> None:
    cfg = default_config("nonn" if section.startswith("workload") else "federated")
    node = cfg
    for part in section.split("."):
        node = getattr(node, part)
    setattr(node, name, value)
    assert "finite" in _refused(cfg, f"{section}.{name}")


def test_a_nan_inside_a_list_names_the_list() -> None:
    cfg = default_config("nair")
    cfg.workload.latencies_s = [0.05, math.nan]
    assert _refused(cfg, "workload.latencies_s").endswith("each element must be a finite number")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("fleet.num_devices", 10**12, "at most 1,000,000 devices"),
        ("fleet.num_devices", 2**64, "out of range"),
        ("workload.rounds", 2.5, "must be an integer"),
        ("workload.rounds", True, "must be an integer"),
        ("channel.ber", "abc", "must be a number"),
        ("workload.vectorize", 1, "must be true or false"),
        ("strategy.timeout_s", math.inf, "must be a finite number, or null"),
        ("channel.max_attempts", 10**12, "allowed range is 1..1000"),
        ("channel.cells", 10**12, "at most 100,000"),
        ("dataset.num_samples", 10**12, "allowed range is 2..10,000,000"),
        ("dataset.alpha", -1.0, "must be a positive number"),
        ("dataset.partition", "nosuch", "allowed: dirichlet, iid, sampled, shards"),
        ("dataset.name", "", "allowed: cifar10, digits"),
        ("strategy.name", "nosuch", "allowed: bulyan"),
        ("strategy.min_train_nodes", 0, "must be >= 1"),
        ("fleet.spread", -1.0, "allowed range is [0, 1)"),
        ("cache_dir", "", "give a path, or null"),
        ("torch_threads", 10**12, "allowed range is 1..1024"),
        ("seed", -1, "allowed range is 0 .. 2**32 - 1"),
        ("log_level", "FOO", "allowed: DEBUG"),
        ("workload.model", "nosuch", "allowed: cnn"),
    ],
)
def test_federated_settings_of_the_wrong_type_or_out_of_range(setting: str, value, message: str) -> None:
    cfg = default_config("federated")
    *path, last = setting.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)
    assert message in _refused(cfg, setting)


def test_a_fleet_of_counts_is_bounded_too() -> None:
    cfg = default_config("federated")
    cfg.fleet.mix = {"rpi3_400mhz": 10**12}
    cfg.fleet.num_devices = 10**12
    _refused(cfg, "fleet.num_devices")
    cfg.fleet.num_devices = 30
    _refused(cfg, "fleet.num_devices")  # the counts must sum to it: said before anything is built


def test_a_fleet_of_a_trillion_devices_is_refused_at_once() -> None:
    import time

    cfg = default_config("federated")
    cfg.fleet.num_devices = 10**12
    t0 = time.perf_counter()
    _refused(cfg, "fleet.num_devices")
    assert time.perf_counter() - t0 < 1.0  # nothing of that size built


@pytest.mark.parametrize(
    ("workload", "name", "value", "message"),
    [
        ("nonn", "teacher_depth", 10**12 * 6 + 4, "a WRN depth 6n + 4 up to 100"),
        ("nonn", "teacher_width", 1e12, "a WRN width multiplier in (0, 16]"),
        ("dream", "student_widths", [1e12], "WRN width multipliers in (0, 16]"),
        ("dream", "clusters", 10**12, "allowed range is 1..100"),
        ("dream", "images", 10**12, "at most 100,000"),
        ("mcpipe", "fc_depth", 10**12, "allowed range is 1..256"),
        ("offload", "hidden", 10**12, "allowed range is 1..65536"),
        ("federated", "optimizer_copies", -1, "must be >= 0"),
    ],
)
def test_sizes_that_would_allocate_without_bound_are_refused(workload, name, value, message) -> None:
    cfg = default_config(workload)
    setattr(cfg.workload, name, value)
    assert message in _refused(cfg, f"workload.{name}")


def test_a_workload_name_must_match_its_settings() -> None:
    cfg = default_config("federated")
    cfg.workload.name = "nonn"
    assert "workload=nonn" in _refused(cfg, "workload.name")


def test_a_microbatch_larger_than_the_training_set_is_refused_before_anything_is_written(tmp_path) -> None:
    cfg = default_config("mcpipe")
    cfg.progress = False
    cfg.workload.microbatch = 100000
    validate(cfg)  # the data set's size is known once it is loaded: the job checks it before it builds
    with pytest.raises(ConfigError, match=r"^workload\.microbatch=100000: at most 1437 \(the training images"):
        run(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_mcpipe_model_too_large_to_hold_is_refused(tmp_path) -> None:
    cfg = default_config("mcpipe")
    cfg.progress = False
    cfg.workload.models = ["fc"]
    cfg.workload.fc_hidden = 10**6
    with pytest.raises(ConfigError, match=r"^workload\.fc_hidden=1000000: the fc model would have"):
        run(cfg, tmp_path / "out")


# --- data sets from a local folder ------------------------------------------------------------
MNIST = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_files_named_gz_that_are_not_gzip_name_the_file_and_the_setting(tmp_path) -> None:
    for name in MNIST:
        (tmp_path / f"{name}.gz").write_bytes(b"this is not gzip")
    with pytest.raises(ValueError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"dataset.path={tmp_path}: {tmp_path / 'train-images-idx3-ubyte.gz'}: not a readable gzip"
    )


def test_an_mnist_folder_without_test_images_is_refused(tmp_path) -> None:
    _idx(tmp_path / MNIST[0], np.zeros((20, 28, 28)), 2051)
    _idx(tmp_path / MNIST[1], np.arange(20) % 10, 2049)
    _idx(tmp_path / MNIST[2], np.zeros((0, 28, 28)), 2051)
    _idx(tmp_path / MNIST[3], np.zeros(0), 2049)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte holds 0 MNIST test images"):
        load_mnist(tmp_path)


def test_a_cifar_folder_without_test_images_is_refused(tmp_path) -> None:
    import pickle

    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        n = 0 if name == "test_batch" else 2
        batch = {b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"^dataset\.path=.*: test_batch holds 0 CIFAR-10 test images"):
        load_cifar10(tmp_path)


def test_the_bad_data_folder_is_a_config_error_of_the_job(tmp_path) -> None:
    for name in MNIST:
        (tmp_path / f"{name}.gz").write_bytes(b"this is not gzip")
    cfg = default_config("federated")
    cfg.dataset.name, cfg.dataset.path = "mnist", str(tmp_path)
    with pytest.raises(ConfigError, match=r"^dataset\.path=.*not a readable gzip file"):
        run(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- a user's Flower apps ---------------------------------------------------------------------
SERVER = "tests.quickstart_app.server_app:app"
CLIENT = "tests.quickstart_app.client_app:app"
RUN_CONFIG = {"num-server-rounds": 1, "fraction-train": 0.5, "fraction-evaluate": 0.5, "lr": 0.1}


def _app_cfg(server: str, client: str, run_config: dict):
    cfg = default_config("federated")
    cfg.progress = False
    cfg.fleet.num_devices = 4
    cfg.fleet.availability = 1.0
    cfg.strategy.timeout_s = None
    cfg.workload.app.server, cfg.workload.app.client = server, client
    cfg.workload.app.run_config = dict(run_config)
    return cfg


@pytest.mark.parametrize(
    ("server", "client", "message"),
    [
        ("math:pi", CLIENT, "workload.app.server='math:pi': is a float, not a Flower ServerApp"),
        (SERVER, "math:pi", "workload.app.client='math:pi': is a float, not a Flower ClientApp"),
        (CLIENT, CLIENT, f"workload.app.server={CLIENT!r}: is a ClientApp, not a Flower ServerApp"),
        (SERVER, SERVER, f"workload.app.client={SERVER!r}: is a ServerApp, not a Flower ClientApp"),
    ],
)
def test_an_app_of_the_wrong_kind_is_refused(server: str, client: str, message: str, tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        run(_app_cfg(server, client, {**RUN_CONFIG, "batch-size": 32, "local-epochs": 1}), tmp_path / "out")
    assert str(info.value) == message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("missing", "app"),
    [("fraction-train", f"workload.app.server={SERVER!r}"), ("batch-size", f"workload.app.client={CLIENT!r}")],
)
def test_a_run_config_key_the_app_reads_but_lacks_is_named(missing: str, app: str, tmp_path) -> None:
    run_config = {k: v for k, v in {**RUN_CONFIG, "batch-size": 32, "local-epochs": 1}.items() if k != missing}
    with pytest.raises(ConfigError) as info:
        run(_app_cfg(SERVER, CLIENT, run_config), tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"workload.app.run_config.{missing}: {app} reads it, but the run config does not give it")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_app_may_still_catch_a_missing_key_itself() -> None:
    from sim.federated.app import RunConfig

    rc = RunConfig({"a": 1})
    assert rc.get("b", 2) == 2 and "b" not in rc
    with pytest.raises(KeyError):
        rc["b"]
