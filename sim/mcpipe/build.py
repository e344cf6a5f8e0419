"""What every run of an mcPipe job shares, built once per model before any run: the model's
layers, initial weights and per-layer costs (`experiments.mcpipe.Model`), the data, the link,
and the settings that say which device runs which stage."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from channels import Link
from devices import CATALOGUE, DeviceProfile
from experiments.common.data import Dataset, load_dataset
from experiments.common.torchdev import use_torch_device
from experiments.mcpipe.model import Params, build_layers
from experiments.mcpipe.partition import balance, stage_bounds
from experiments.mcpipe.stage import Stage
from experiments.mcpipe.training import Batches, Model, build_model
from experiments.mcpipe.versions import SGD
from sim.config import Config, ConfigError, check_workload
from sim.mcpipe.settings import McpipeSettings
from sim.net import build_link
from sim.seeding import stream

__all__ = ["Job", "prepare"]


@dataclass
class Job:
    """One model of the job with everything its runs share (sent whole to a back end's worker)."""

    cfg: Config
    model: Model
    data: Dataset
    link: Link

    @property
    def m(self) -> McpipeSettings:
        return self.cfg.workload

    def device(self, i: int) -> DeviceProfile:
        """Worker i's device: `workload.devices[i % len]`."""
        return CATALOGUE[self.m.devices[i % len(self.m.devices)]]

    def opt(self) -> SGD:
        return SGD(self.m.lr, self.m.momentum, self.m.weight_decay)

    @property
    def torch_device(self) -> torch.device:
        """Where the runs train and evaluate (`torch_device`)."""
        return use_torch_device(self.cfg.torch_device)

    def batches(self) -> Batches:
        """The job's microbatch stream, from its start (each run draws its own copy), on the torch device."""
        return Batches(self.data, self.m.microbatch, partial(stream, self.cfg.seed, "order"), self.torch_device)

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test images and labels on the torch device (what the monitor evaluates on)."""
        return self.data.x_test.to(self.torch_device), self.data.y_test.to(self.torch_device)

    def partition(self, n: int) -> list[tuple[int, int]]:
        """The [first, end) layers of each of `n` stages, as `workload.partition` says."""
        if self.m.partition == "layers":
            starts = [0, *self.m.boundaries]
        else:
            speeds = [self.device(i).flops_per_s if self.m.partition == "time" else 1.0 for i in range(n)]
            starts = balance(self.model.layer_flops, speeds)
        return stage_bounds(starts, len(self.model.layers))

    def params(self) -> list[Params]:
        """A copy of the model's initial weights (drawn on the CPU) on the torch device, for one run."""
        device = self.torch_device
        return [(w.to(device), b.to(device)) for w, b in self.model.params()]

    def stage(
        self, schedule: str, index: int, bounds: tuple[int, int], init: list[Params], *, first: bool, last: bool
    ) -> Stage:
        """Stage `index` (layers [bounds)) of a `schedule` run, its stores as the settings ask."""
        return self.model.stage(
            schedule,
            index,
            bounds,
            init,
            self.opt(),
            store=self.m.store,
            lowrank=self.m.rebuild == "lowrank",
            first=first,
            last=last,
        )

    def whole(self, schedule: str, init: list[Params]) -> Stage:
        """The whole model as one stage (a worker that trains it alone)."""
        return self.stage(schedule, 0, (0, len(self.model.layers)), init, first=True, last=True)


def _layers(m, data: Dataset, name: str) -> list:
    """Model `name`'s layers for the data set, as the workload's settings shape them."""
    return build_layers(
        name,
        data.input_shape,
        data.num_classes,
        widths=m.vgg_widths,
        hidden=m.vgg_hidden,
        fc_hidden=m.fc_hidden,
        fc_depth=m.fc_depth,
    )


def _model(cfg: Config, data: Dataset, name: str) -> Model:
    """Model `name`'s layers for the data set, its seeded initial weights and its costs."""
    m = cfg.workload
    layers = _layers(m, data, name)
    gen = torch.Generator().manual_seed(int(stream(cfg.seed, "model", name).integers(2**62)))
    first = Batches(data, m.microbatch, partial(stream, cfg.seed, "order"))(0)
    return build_model(name, layers, gen, first, SGD(m.lr, m.momentum, m.weight_decay))


def prepare(cfg: Config) -> list[Job]:
    """Build every model's shared pieces (settings already validated by `sim.jobs.validate`);
    a data set or link that cannot be had raises a one-line ConfigError."""
    try:
        data = load_dataset(cfg.dataset.name, path=cfg.dataset.path, seed=cfg.seed, num_samples=cfg.dataset.num_samples)
        link = build_link(cfg.channel)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    _check_sizes(cfg.workload, data)
    return [Job(cfg, _model(cfg, data, name), data, link) for name in cfg.workload.models]


MAX_PARAMS = 100_000_000  # 400 MB of float32 weights, which every run holds (and copies) for real


def _check_sizes(m: McpipeSettings, data: Dataset) -> None:
    """Refuse a microbatch the training set cannot fill, or a model too large to hold, before any
    is built (both would otherwise allocate without bound)."""
    n = len(data.y_train)
    check_workload(
        m.microbatch <= n,
        "microbatch",
        m.microbatch,
        f"at most {n} (the training images of dataset.name={data.name!r}; a microbatch is a slice of them)",
    )
    for name in m.models:
        layers = _layers(m, data, name)
        params = sum(layer.num_params for layer in layers)
        if params > MAX_PARAMS:
            if name == "fc":
                setting, value = "fc_hidden", m.fc_hidden
            else:
                dense = layers[-2].num_params
                setting, value = ("vgg_hidden", m.vgg_hidden) if 2 * dense >= params else ("vgg_widths", m.vgg_widths)
            check_workload(
                False,
                setting,
                value,
                f"the {name} model would have {params:,} parameters; at most {MAX_PARAMS:,} "
                "(400 MB of float32 weights, held for real)",
            )
