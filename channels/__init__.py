"""What a link is: bit-error models and packet transfers as pure functions. No clock."""

from .errors import GilbertElliott, IndependentBits
from .link import (
    MODES,
    Link,
    TransferOutcome,
    corrupt_arrays,
    flip_bits,
    transfer,
)

__all__ = [
    "MODES",
    "GilbertElliott",
    "IndependentBits",
    "Link",
    "TransferOutcome",
    "corrupt_arrays",
    "flip_bits",
    "transfer",
]
