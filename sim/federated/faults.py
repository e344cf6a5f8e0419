"""What the grid does about faulty clients (a mixin of `SimGrid`): replies whose arrays hold NaN
or inf kept from the server (`rejects`), whether each server model was all finite
(`note_model`), and a ClientApp's error in its row, the first of each kind told (`_error`)."""

from __future__ import annotations

from flwr.app import ArrayRecord, RecordDict

from sim.federated.payload import Arrival, finite
from sim.federated.rows import ClientRow

__all__ = ["ClientFaults"]


class ClientFaults:
    """Uses the grid's `accept_non_finite`, `model_finite`, `errors` and `on_error`."""

    def note_model(self, version: int, arrays: ArrayRecord) -> None:
        """The server's model `version` (evaluated, or sent out): is it all finite?"""
        if version not in self.model_finite:
            self.model_finite[version] = finite(RecordDict({"arrays": arrays}))

    def rejects(self, got: Arrival, row: ClientRow) -> bool:
        """A reply whose arrays hold NaN or inf is kept from the server (unless it accepts them):
        its row says `non_finite`."""
        if self.accept_non_finite or got.finite:
            return False
        row.status = "non_finite"
        return True

    def _error(self, row: ClientRow, text: str) -> None:
        """A ClientApp failed: its error in its row; the first of each kind told at once."""
        row.error = " ".join(str(text).split())[:500]
        kind = row.error.partition(":")[0]
        if kind not in self.errors:
            self.errors[kind] = row.error
            if self.on_error is not None:
                self.on_error(f"the ClientApp failed (round {row.round}, node {row.node_id}): {row.error}")
