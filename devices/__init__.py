"""What a device is: profiles (pure data), a catalogue, and flat-array fleets. No clock."""

from .catalogue import CATALOGUE, get_profile, register
from .fleet import Fleet, build_fleet, fleet_counts, fleet_of
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
