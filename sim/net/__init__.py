"""The simulated network every workload's timeline is built from: links and messages
(`links`), the medium transfers share (`medium`), when devices are online (`availability`),
stateful devices and the server on one clock (`network`), and the energy ledger (`energy`)."""

from sim.net.energy import STATES, EnergyLedger
from sim.net.links import Mailbox, build_link, propagate, radio
from sim.net.medium import Cell, Medium, fair_rates
from sim.net.network import TIMELINE_COLUMNS, Network, Server, Timeline

__all__ = [
    "STATES",
    "TIMELINE_COLUMNS",
    "Cell",
    "EnergyLedger",
    "Mailbox",
    "Medium",
    "Network",
    "Server",
    "Timeline",
    "build_link",
    "fair_rates",
    "propagate",
    "radio",
]
