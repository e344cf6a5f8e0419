"""The faults a run ends with in one line and exit status 1 instead of a traceback
(`sim.console.faults_reported`): `BackendFailure` here, and `experiments.common.files.OutputError`.
Apart from the back ends so that the command line names them without importing torch (its
process does not import it when the command splits: `sim.split`); both cross from the job's
process to the command line's whole (`__reduce__`)."""

from __future__ import annotations

__all__ = ["BackendFailure"]


class BackendFailure(RuntimeError):
    """The back end itself failed: a process or node that ran the computations died, or it lost
    their results. Not a computation's own error (a ClientApp's exception is its error reply; a
    call's exception is raised as it is). The command line ends the run with it in one line,
    `backend=NAME failed: WHAT (DETAIL)`, exit status 1 (`sim/__main__.py`); what the run wrote
    so far stays on disk."""

    def __init__(self, backend: str, what: str, detail: str = ""):
        self.backend, self.what, self.detail = backend, what, detail
        super().__init__(f"backend={backend} failed: {what}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return type(self), (self.backend, self.what, self.detail)
