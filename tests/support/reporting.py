"""A reporter that records what the library reports, for tests of progress and notes."""

from __future__ import annotations

import threading

from venvlayers.progress import Reporter


class RecordingReporter(Reporter):
    """Every event as `(kind, key, value)`: begin (total), advance (amount), end (status).

    Notes go to `notes`. Thread-safe, as reporters must be.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.notes: list[str] = []
        self.descriptions: dict[str, str] = {}
        """What each unit of work was called when it began, by key."""
        self._lock = threading.Lock()

    def begin(self, key: str, description: str, total: int | None = None) -> None:
        with self._lock:
            self.events.append(("begin", key, total))
            self.descriptions[key] = description

    def advance(self, key: str, amount: int) -> None:
        with self._lock:
            self.events.append(("advance", key, amount))

    def end(self, key: str, status: str = "done") -> None:
        with self._lock:
            self.events.append(("end", key, status))

    def note(self, message: str) -> None:
        with self._lock:
            self.notes.append(message)

    @property
    def begun(self) -> list[str]:
        """The keys of every unit of work that began, in order."""
        return [key for kind, key, _ in self.events if kind == "begin"]

    def without_keys(self) -> list[tuple[str, object]]:
        return [(kind, value) for kind, _, value in self.events]
