"""What a device is: profiles (pure data), a catalogue, and flat-array fleets. No clock."""

from .catalogue import CATALOGUE, get_profile, register
from .profile import STATES, DeviceProfile

__all__ = [
    "CATALOGUE",
    "STATES",
    "DeviceProfile",
    "Fleet",
    "build_fleet",
    "fleet_counts",
    "fleet_of",
    "get_profile",
    "register",
]

_FLEET = ("Fleet", "build_fleet", "fleet_counts", "fleet_of")


def __getattr__(name: str):
    """The fleets (numpy arrays) when first named: the profiles and the catalogue, which the
    command line checks settings against, need no numpy (`sim.split`)."""
    if name in _FLEET:
        from . import fleet

        return getattr(fleet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
