"""Progress reporting from the library without printing: the CLI decides how it looks.

Library functions take a `Reporter`; the default one ignores everything, the CLI
passes one that draws rich progress bars. Implementations must be thread-safe:
layers are processed in parallel.
"""

from __future__ import annotations

__all__ = ["NULL_REPORTER", "Reporter"]


class Reporter:
    """Receives progress events; this base class discards them."""

    def begin(self, key: str, description: str, total: int | None = None) -> None:
        """A unit of work `key` starts (`total` in bytes/items if known)."""

    def advance(self, key: str, amount: int) -> None:
        """`amount` more of `key` is done."""

    def end(self, key: str, status: str = "done") -> None:
        """`key` finished; `status` is a short word such as done, skipped, failed."""

    def note(self, message: str) -> None:
        """A one-line remark worth showing to a person (not an error)."""


NULL_REPORTER = Reporter()
