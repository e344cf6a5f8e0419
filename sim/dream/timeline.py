"""Dream Distillation on the clock: the data owner (a device of the fleet's kind `workload.owner`)
sends the metadata to the compressing server over the `channel` link, then the server dreams
the images and distils each student in turn, each a computation of the FLOPs PyTorch counted on
the real work, on the server's profile. One system, one clock (`sim.net`)."""

from __future__ import annotations

from dataclasses import dataclass

from channels import transfer
from devices import DeviceProfile, fleet_of
from sim.config import Config
from sim.net.build import build_network
from sim.seeding import stream

__all__ = ["Phase", "simulate"]

OWNER = 0  # the data owner's index on the network


@dataclass
class Phase:
    """One step of the compression on the clock: the row of phases.csv."""

    phase: str  # metadata | generate | distill
    source: str  # the images a distillation learns from ("" for the others)
    student_width: float
    flops: int
    bytes: int
    start_s: float
    end_s: float
    owner_energy_j: float
    server_energy_j: float
    delivered: bool = True


def simulate(
    cfg: Config,
    owner: DeviceProfile,
    server_profile: DeviceProfile,
    metadata_bytes: int,
    generate_flops: int,
    distill_flops: dict[tuple[str, float], int],
) -> tuple[list[Phase], list[dict]]:
    """The phases' rows and the system's timeline."""
    net, server = build_network(cfg, fleet_of([owner]), label=lambda _d: "owner", own_devices=server_profile)
    env, phases = net.env, []

    def owner_j() -> float:
        return float(net.ledger.energy_j[OWNER, :3].sum())

    def step(name: str, source: str, width: float, flops: int):
        t0, e0 = env.now, server.energy_j
        yield from server.compute(flops)
        phases.append(Phase(name, source, width, flops, 0, t0, env.now, 0.0, server.energy_j - e0))

    def run():
        t0 = env.now
        out = transfer(net.links(OWNER)[0], metadata_bytes, stream(cfg.seed, "dream-metadata"))
        net.begin(OWNER)
        try:
            why = yield from net.transfer(OWNER, "up", out)
        finally:
            net.end(OWNER)
        delivered = out.delivered and why is None
        phases.append(
            Phase("metadata", "", 0.0, 0, out.bits_sent // 8, t0, env.now, owner_j(), 0.0, delivered=delivered)
        )
        if not delivered:  # the server never gets the metadata: nothing to dream from
            return
        yield from step("generate", "dream", 0.0, generate_flops)
        for (source, width), flops in distill_flops.items():
            yield from step("distill", source, width, flops)

    env.process(run())
    env.run()
    net.ledger.close(env.now)
    return phases, net.timeline.sorted()
