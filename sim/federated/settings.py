"""Settings of the federated workload (`workload=federated`, the default): the schema of
`workload.*`, the sections it uses, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from sim.config import Config, ConfigError, check, positive

MAX_DEVICES = 1_000_000
TOO_MANY_DEVICES = (
    f"at most {MAX_DEVICES:,} devices (each holds ~200 bytes of state, and every round Flower samples from the "
    "list of all of them; docs/scale.md measures 100,000 in ~450 MiB)"
)

__all__ = ["AppConfig", "FederatedSettings", "validate"]


@dataclass
class AppConfig:
    """A user's own Flower apps, as `"package.module:attr"`; both unset = built-in apps."""

    # a Flower app folder, as `flwr run DIR` takes it: its pyproject.toml names the apps and the
    # run config (sim/federated/app.py); server, client and run_config here override it
    path: Optional[str] = None
    server: Optional[str] = None
    client: Optional[str] = None
    run_config: dict[str, Any] = field(default_factory=dict)
    accuracy_metric: str = "accuracy"  # metric read from evaluate replies for rounds.csv
    loss_metric: str = "loss"
    # true: the ClientApp's memory outside torch (numpy arrays, Python objects, serialised
    # payloads) counted against the device too, by tracemalloc: the most a step held at once and
    # let go of, in 64 KiB pages. It about doubles the wall time of a small PyTorch client step
    # here (~25 ms each), and a process's first steps can be charged for warming caches up (the
    # app's data loaded once per process), so results are reproducible run to run in a fresh
    # process, not across back ends; false: torch's memory only (the work meter's, exact)
    python_memory: bool = False


@dataclass
class FederatedSettings:
    """Federated training: the model, rounds, local training and the app that runs it (`workload.*`)."""

    name: str = "federated"
    model: str = "cnn"  # cnn | mlp | fedmax_cifar_cnn
    rounds: int = 30
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.5
    weight_decay: float = 5.0e-4
    lr_decay: float = 0.996  # lr multiplied by this each round (FedMAX's schedule)
    optimizer_copies: int = 1  # optimiser state, in copies of the parameters (SGD momentum: 1)
    # the built-in ClientApp's sampled clients of a round trained together (torch.func.vmap over
    # their stacked weights; docs/scale.md, section 6): same simulated outcome, faster rounds;
    # backend=local and the built-in models only
    vectorize: bool = False
    target_accuracy: float = 0.8
    # simulated seconds after which no new round (or, asynchronously, no new message) starts:
    # strategies compared at equal simulated time; null = `rounds` alone ends the run
    time_budget_s: Optional[float] = None
    # a reply whose arrays hold NaN or inf (a raw channel's flips, a diverging client) is counted
    # (status non_finite) and kept out of aggregation; true: the server takes it in as it is
    accept_non_finite: bool = False
    app: AppConfig = field(default_factory=AppConfig)


def validate(cfg: Config) -> None:
    from devices import fleet_counts
    from sim.federated.app import resolve_app

    resolve_app(cfg)
    f = cfg.fleet
    check(bool(f.mix), "fleet.mix", dict(f.mix), "empty; give at least one device profile")
    check(f.num_devices >= 1, "fleet.num_devices", f.num_devices, "must be >= 1 (an empty fleet cannot train)")
    check(f.num_devices <= MAX_DEVICES, "fleet.num_devices", f.num_devices, TOO_MANY_DEVICES)
    check(0.0 <= f.spread < 1.0, "fleet.spread", f.spread, "allowed range is [0, 1)")
    try:  # the fleet's profiles and counts, without building it
        counts = fleet_counts(dict(f.mix), f.num_devices)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    total = sum(counts.values())
    check(total <= MAX_DEVICES, "fleet.mix", dict(f.mix), f"the counts sum to {total:,}; {TOO_MANY_DEVICES}")
    s = cfg.strategy
    check(0.0 < s.fraction_train <= 1.0, "strategy.fraction_train", s.fraction_train, "allowed range is (0, 1]")
    check(
        0.0 <= s.fraction_evaluate <= 1.0, "strategy.fraction_evaluate", s.fraction_evaluate, "allowed range is [0, 1]"
    )
    if s.timeout_s is not None:
        positive("strategy.timeout_s", s.timeout_s)
    check(s.min_train_nodes >= 1, "strategy.min_train_nodes", s.min_train_nodes, "must be >= 1")
    from strategies import STRATEGIES

    check(s.name in STRATEGIES, "strategy.name", s.name, f"allowed: {', '.join(sorted(STRATEGIES))}")
    w: FederatedSettings = cfg.workload
    check(w.rounds >= 1, "workload.rounds", w.rounds, "must be >= 1")
    check(w.local_epochs >= 1, "workload.local_epochs", w.local_epochs, "must be >= 1")
    check(w.batch_size >= 1, "workload.batch_size", w.batch_size, "must be >= 1")
    positive("workload.lr", w.lr)
    from experiments.common.models import MODEL_NAMES

    check(w.model in MODEL_NAMES, "workload.model", w.model, f"allowed: {', '.join(MODEL_NAMES)}")
    check(0.0 <= w.momentum < 1.0, "workload.momentum", w.momentum, "allowed range is [0, 1)")
    check(w.weight_decay >= 0.0, "workload.weight_decay", w.weight_decay, "must be >= 0")
    check(0.0 < w.lr_decay <= 1.0, "workload.lr_decay", w.lr_decay, "allowed range is (0, 1] (1: no decay)")
    if w.time_budget_s is not None:
        positive("workload.time_budget_s", w.time_budget_s)
    check(w.optimizer_copies >= 0, "workload.optimizer_copies", w.optimizer_copies, "must be >= 0 (plain SGD: 0)")
    for name in ("accuracy_metric", "loss_metric"):
        v = getattr(w.app, name)
        check(v.strip() != "", f"workload.app.{name}", v, "give the name of a metric the app reports")
    check(0.0 <= w.target_accuracy <= 1.0, "workload.target_accuracy", w.target_accuracy, "allowed range is [0, 1]")
    check(
        (w.app.server is None) == (w.app.client is None),
        "workload.app",
        f"server={w.app.server}, client={w.app.client}",
        "give both a ServerApp and a ClientApp as 'package.module:attr', or neither",
    )
    if w.vectorize:
        check(
            w.app.client is None,
            "workload.vectorize",
            True,
            "trains the built-in ClientApp's clients together; with workload.app.client set it must be false",
        )
        check(
            cfg.backend == "local",
            "workload.vectorize",
            True,
            f"needs backend=local (backend={cfg.backend} runs each client on its own); allowed there: false",
        )
    check(
        w.app.client is None or cfg.torch_device == "cpu",
        "torch_device",
        cfg.torch_device,
        "moves the built-in ClientApp and server; a user's Flower app (workload.app.client) chooses its own "
        "device, as under flwr run; allowed with it: cpu",
    )
