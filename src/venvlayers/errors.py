"""The exception hierarchy: every user-facing failure is a `VenvLayersError`.

The CLI prints `str(error)` as one line and exits 1; anything else escaping is a bug.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "BuildError",
    "DeployError",
    "DistributionError",
    "LockError",
    "PublishError",
    "RuntimeSourceError",
    "SelectionError",
    "SignatureError",
    "SpecError",
    "ToolError",
    "TransferError",
    "VenvLayersError",
]


class VenvLayersError(Exception):
    """Root of every error venvlayers reports to its user."""


class SpecError(VenvLayersError, ValueError):
    """The stack specification is invalid; the message names file, layer and field.

    `problems` holds every problem found, so a spec with several mistakes
    reports them all at once; `str()` joins them one per line.
    """

    def __init__(self, problems: str | list[str], warnings: list[str] | None = None) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        # warnings often explain an error ("did you mean 'frameworks'?"), so they travel along
        self.warnings: list[str] = list(warnings or [])
        super().__init__("\n".join(self.problems))


class SelectionError(VenvLayersError, ValueError):
    """An `--include` pattern or layer name selects nothing usable."""


class RuntimeSourceError(VenvLayersError, RuntimeError):
    """A Python runtime could not be obtained, verified or imported."""


class LockError(VenvLayersError, RuntimeError):
    """A layer could not be locked (resolution failure, conflict, missing wheels)."""


class BuildError(VenvLayersError, RuntimeError):
    """A layer environment could not be built."""


class ArchiveError(VenvLayersError, RuntimeError):
    """An archive could not be written, or is unsafe or corrupt to read."""


class PublishError(VenvLayersError, RuntimeError):
    """Layers could not be published or exported."""


class DeployError(VenvLayersError, RuntimeError):
    """A published stack could not be deployed, run or inspected on the target."""


class SignatureError(VenvLayersError, ValueError):
    """A signature, signing key or allowed_signers file is unusable, or a signature fails.

    `problem` says which, as a `venvlayers.signing.SignatureProblem` value (a str), so
    callers can react (prompt for a passphrase, tell tampering from an unknown signer)
    without parsing the message.
    """

    def __init__(self, message: str, problem: str) -> None:
        self.problem = problem
        super().__init__(message)


class ToolError(VenvLayersError, RuntimeError):
    """An external tool (uv, patchelf, a layer's python) failed."""


class TransferError(VenvLayersError, RuntimeError):
    """A download or upload failed: network, HTTP status, or content that fails its check."""


class DistributionError(TransferError):
    """A stack could not be pushed to or pulled from an OCI registry or image layout."""
