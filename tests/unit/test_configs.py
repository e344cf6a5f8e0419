"""Every config in sim/conf/ composes with Hydra, converts to the typed schema and validates."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

import sim.__main__  # noqa: F401  (registers the structured schema `base_config`)
from devices import CATALOGUE
from sim.config import Config, ConfigError
from sim.federated.build import prepare, strategy_variants
from sim.jobs import WORKLOADS, refuse_unused, run, validate
from sim.net import build_link
from strategies import STRATEGIES, build_strategy

from ..conftest import CONF_DIR, REPO

GROUPS = ("fleet", "channel", "strategy", "dataset", "workload")
NEEDS_PATH = {"mnist", "cifar10"}  # datasets read from a local folder (`path: ???`)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def _hydra():
    """One Hydra initialisation for the module (composing is what each test does)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def _compose(overrides: list[str]) -> Config:
    dcfg = compose(config_name="config", overrides=overrides)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    cfg.compared = sim.__main__.compared_params(cfg)  # as the entry point does
    return cfg


def _path_override(group: str, option: str) -> list[str]:
    return ["dataset.path=/data/somewhere"] if group == "dataset" and option in NEEDS_PATH else []


GROUP_OPTIONS = [pytest.param(g, o, id=f"{g}={o}") for g in GROUPS for o in _options(g)]
EXPERIMENTS = _options("experiment")


def test_conf_has_every_group_and_an_experiment() -> None:
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ has no options"
    assert "fedmax_noniid" in EXPERIMENTS


def test_defaults_compose_and_validate() -> None:
    cfg = _compose([])
    validate(cfg)
    assert cfg.compare == []
    assert cfg.strategy.name in STRATEGIES


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_group_option_composes_and_validates(group: str, option: str) -> None:
    cfg = _compose([f"{group}={option}", *_path_override(group, option)])
    validate(cfg)
    if group == "strategy":
        assert cfg.strategy.name == option
        assert option in STRATEGIES
        build_strategy(option, cfg.strategy.params, fraction_train=cfg.strategy.fraction_train)  # params accepted
    elif group == "dataset":
        assert cfg.dataset.name == option
    elif group == "fleet":
        assert set(cfg.fleet.mix) <= set(CATALOGUE)
    elif group == "channel":
        build_link(cfg.channel)
    elif group == "workload":
        assert cfg.workload.name == option


@pytest.mark.parametrize("dataset", sorted(NEEDS_PATH & set(_options("dataset"))))
def test_local_datasets_require_a_path(dataset: str, tmp_path) -> None:
    # `path: ???` merged over the schema's `None` leaves None (OmegaConf ignores a MISSING
    # source value); either way the job must be refused, naming dataset.path
    try:
        cfg = _compose([f"dataset={dataset}", "workload.model=mlp", "fleet.num_devices=4", "progress=false"])
    except MissingMandatoryValue as exc:
        assert "path" in str(exc)
        return
    assert cfg.dataset.path is None
    with pytest.raises(ConfigError, match=r"dataset\.path"):
        run(cfg, tmp_path)
    assert not list(tmp_path.rglob("*.csv"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_validates(experiment: str) -> None:
    cfg = _compose([f"+experiment={experiment}"])
    validate(cfg)
    assert isinstance(cfg.workload, WORKLOADS[cfg.workload.name].schema)


def test_the_registry_names_each_workload_as_its_package_does() -> None:
    assert [WORKLOADS[name].name for name in WORKLOADS] == list(WORKLOADS)
    assert "nosuch" not in WORKLOADS and WORKLOADS.get("nosuch") is None


def test_a_jobs_process_imports_only_its_own_workload() -> None:
    # the registry imports a workload's package when it is looked up (`sim.jobs.Registry`)
    code = (
        "import sys; from sim.jobs import WORKLOADS, default_config, validate; validate(default_config('federated')); "
        "print(*[m for m in sorted(sys.modules) if m.startswith('sim.') and m.count('.') == 1 and m[4:] in WORKLOADS])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr[-800:]
    assert res.stdout.split() == ["sim.federated"]


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_each_workload_option_selects_its_own_schema(name: str) -> None:
    cfg = _compose([f"workload={name}"])
    assert type(cfg.workload) is WORKLOADS[name].schema
    tree = OmegaConf.to_container(compose(config_name="config", overrides=[f"workload={name}"]))
    assert not set(tree) & {"nonn", "nair", "mcpipe"}  # no section of another workload


def test_experiments_extend_each_other() -> None:
    base, four = _compose(["+experiment=nonn"]), _compose(["+experiment=nonn_4s"])
    assert (base.workload.num_students, four.workload.num_students) == (2, 4)
    assert replace(four.workload, num_students=2) == base.workload and four.channel == base.channel


@pytest.mark.parametrize(
    ("experiment", "override", "section"),
    [
        ("nonn", "strategy=krum", "strategy"),
        ("nonn", "fleet.num_devices=3", "fleet"),
        ("nair", "compare=[fedavg]", "compare"),
        ("mcpipe", "+strategy.params.eta=1", "strategy"),
        ("fedmax_noniid", "compared.fedavg.x=1", "compared"),
    ],
)
def test_a_section_the_workload_does_not_read_is_refused(experiment: str, override: str, section: str) -> None:
    cfg = _compose([f"+experiment={experiment}"])
    with pytest.raises(ConfigError, match=f"does not use `{section}`") as err:
        refuse_unused(cfg, [override])
    assert str(err.value).startswith(override) and "\n" not in str(err.value)
    refuse_unused(cfg, ["seed=3", "channel.ber=0.1", "workload.lr=0.1", "torch_threads=2"])  # all read by every job
    for variant in strategy_variants(cfg):
        assert variant.name in STRATEGIES


def test_fedmax_noniid_compares_fedmax_with_its_baselines_on_shards() -> None:
    cfg = _compose(["+experiment=fedmax_noniid"])
    assert cfg.compare == ["fedavg", "fedprox", "fedmax"]
    assert cfg.dataset.partition == "shards"
    assert cfg.strategy.name == "fedmax"
    iid = _compose(["+experiment=fedmax_iid"])
    assert iid.dataset.partition == "iid" and iid.compare == cfg.compare
    variants = strategy_variants(cfg)
    assert [v.name for v in variants] == ["fedavg", "fedprox", "fedmax"]
    assert variants[1].params == {"proximal_mu": 1.0} and variants[2].params == {"beta": 1000.0}


def test_fedmax_paper_takes_the_authors_training_and_their_beta_per_activation() -> None:
    cfg = _compose(["+experiment=fedmax_paper"])
    validate(cfg)
    w = cfg.workload
    training = (w.batch_size, w.lr, w.momentum, w.weight_decay, w.lr_decay, w.local_epochs)
    assert training == (100, 0.1, 0.1, 5e-4, 0.996, 5)
    assert cfg.compare == ["fedavg", "fedprox", "fedmax"] and cfg.dataset.partition == "shards"
    variants = strategy_variants(cfg)
    assert variants[1].params == {"proximal_mu": 1.0}
    task = prepare(cfg)[3]  # the default data's CNN: D, the width of its last hidden activation
    _, feats = task.build_model()(task.data.x_train[:2], with_features=True)
    assert variants[2].params["beta"] / feats.shape[1] == pytest.approx(1000 / 512)  # the authors' beta / D


@pytest.mark.parametrize("option, mix", [("mcu", {"cortex_m7_512kb": 1.0}), ("rpi", {"rpi3_400mhz": 1.0})])
def test_a_fleet_option_replaces_the_mix(option: str, mix: dict) -> None:
    assert _compose([f"fleet={option}"]).fleet.mix == mix
    assert _compose(["+experiment=fedmax_noniid", f"fleet={option}"]).fleet.mix == mix


@pytest.mark.parametrize(
    "overrides, mix",
    [
        (
            ["+experiment=fedmax_noniid", "fleet.mix={odroid_xu4:1}"],
            {"odroid_xu4": 1.0},
        ),  # not merged into the mixed fleet
        (["fleet=rpi", "fleet.mix={odroid_xu4:1}"], {"odroid_xu4": 1.0}),  # Hydra alone: 'not in struct'
        (["fleet=mixed", "fleet.mix={rpi3_400mhz:2,odroid_xu4:3}"], {"rpi3_400mhz": 2.0, "odroid_xu4": 3.0}),
        (["fleet=mixed", "++fleet.mix={cortex_m7_512kb:1}"], {"cortex_m7_512kb": 1.0}),
        (["fleet=mixed", "fleet.mix.odroid_xu4=0.7"], {"rpi3_400mhz": 0.5, "odroid_xu4": 0.7, "cortex_m7_512kb": 0.1}),
    ],
)
def test_a_mix_on_the_command_line_replaces_the_mix(overrides: list[str], mix: dict) -> None:
    assert _compose(overrides).fleet.mix == mix  # a key of it (the last) still sets that key alone


def test_a_battery_map_replaces_the_one_the_config_holds() -> None:
    given = ["fleet.battery_j={rpi3_400mhz:10,odroid_xu4:20}"]
    assert _compose([*given, "fleet.battery_j={odroid_xu4:5}"]).fleet.battery_j == {"odroid_xu4": 5}
    assert _compose(given).fleet.battery_j == {"rpi3_400mhz": 10, "odroid_xu4": 20}


def test_other_dicts_still_merge() -> None:
    """strategy.params are keyword arguments: a dict of some sets those, keeping the option's others."""
    params = _compose(["strategy=fedbuff", "strategy.params={buffer_size:5}"]).strategy.params
    assert params["buffer_size"] == 5 and params["server_lr"] == 1.0 and len(params) == 6


def test_a_mix_value_that_does_not_fit_is_refused_naming_the_override() -> None:
    with pytest.raises(Exception, match=r"Error merging override fleet\.mix=\{odroid_xu4:x\}") as info:
        _compose(["fleet.mix={odroid_xu4:x}"])
    assert "could not be converted to Float" in str(info.value.__cause__)


def test_overrides_reach_the_typed_config() -> None:
    cfg = _compose(["channel.ber=1e-4", "fleet.num_devices=7", "strategy.timeout_s=null", "compare=[fedavg,fedprox]"])
    assert cfg.channel.ber == 1e-4
    assert cfg.fleet.num_devices == 7
    assert cfg.strategy.timeout_s is None
    assert cfg.compare == ["fedavg", "fedprox"]


@pytest.mark.parametrize(
    "override, setting",
    [
        ("channel.ber=2", "channel.ber"),
        ("channel.ber=-0.1", "channel.ber"),
        ("channel.bandwidth_bps=0", "channel.bandwidth_bps"),
        ("fleet.num_devices=0", "fleet.num_devices"),
        ("strategy.fraction_train=0", "strategy.fraction_train"),
        ("workload.rounds=0", "workload.rounds"),
        ("backend=gpu", "backend"),
        ("ray.num_cpus=0", "ray.num_cpus"),
        ("ray.num_workers=0", "ray.num_workers"),
        ("processes=0", "processes"),
        ("backend=processes torch_threads=2", "torch_threads"),
        ("torch_threads=0", "torch_threads"),
    ],
)
def test_validate_names_the_bad_setting(override: str, setting: str) -> None:
    cfg = _compose(override.split())
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")) as info:
        validate(cfg)
    assert "\n" not in str(info.value)


def test_paper_scale_experiments_have_the_papers_set_ups() -> None:
    nonn = _compose(["+experiment=nonn_cifar10"])
    n = nonn.workload
    assert nonn.dataset.name == "cifar10" and (n.teacher_depth, n.teacher_width) == (40, 4.0)
    assert (n.num_students, n.memory_budget_bytes, n.bytes_per_param, n.flop_budget) == (2, 500000, 1.0, 2.0e8)
    nair = _compose(["+experiment=nair_cifar10"])
    assert nair.dataset.name == "cifar10" and nair.workload.input_size == 32 and nair.workload.batch_size == 80
    assert nair.channel.bandwidth_bps == 2.5e5
    fed = _compose(["+experiment=fedmax_cifar10"])
    w = fed.workload
    assert fed.dataset.name == "cifar10" and fed.dataset.partition == "shards" and fed.fleet.num_devices == 100
    assert (w.model, w.batch_size, w.lr, w.local_epochs, w.rounds) == ("fedmax_cifar_cnn", 100, 0.1, 5, 600)
    assert fed.strategy.fraction_train == 0.1 and fed.compare == ["fedavg", "fedprox", "fedmax"]
