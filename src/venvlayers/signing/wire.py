"""The SSH wire encoding (RFC 4251 section 5): uint32, string and mpint, read and written.

Everything an SSH signature or public key blob holds is built from these three, so one
careful reader is the whole defence against malformed input: every read is bounds-checked
and raises `WireError`, which callers turn into a `SignatureError` naming their file.
"""

from __future__ import annotations

__all__ = ["WireError", "WireReader", "mpint", "string", "uint32"]

# OpenSSH refuses bignums longer than 16384 bits (+1 sign byte); so do we, which also
# keeps a hostile length field from making us convert megabytes into an int.
_MAX_MPINT_BYTES = 16384 // 8 + 1


class WireError(ValueError):
    """The bytes are not the SSH structure they should be; the message says where."""


def uint32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def string(value: bytes | str) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return uint32(len(raw)) + raw


def mpint(value: int) -> bytes:
    """A non-negative integer as an SSH mpint: minimal two's complement, big-endian."""
    if value < 0:
        raise ValueError("negative mpint")
    if value == 0:
        return string(b"")
    # one extra bit so a set top bit gets its 0x00 sign byte
    return string(value.to_bytes(value.bit_length() // 8 + 1, "big"))


class WireReader:
    """Reads SSH wire fields from `data` in order; `what` names the structure in errors."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def _take(self, count: int, field: str) -> bytes:
        end = self._pos + count
        if end > len(self._data):
            raise WireError(f"{self._what} is truncated: {field} runs past its end")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def fixed(self, count: int, field: str) -> bytes:
        return self._take(count, field)

    def uint32(self, field: str) -> int:
        return int.from_bytes(self._take(4, field), "big")

    def string(self, field: str) -> bytes:
        return self._take(self.uint32(f"the length of {field}"), field)

    def text(self, field: str) -> str:
        """A string field that must be printable ASCII (names, namespaces, algorithms)."""
        raw = self.string(field)
        if not all(0x20 <= byte < 0x7F for byte in raw):
            raise WireError(f"{self._what}: {field} is not printable ASCII")
        return raw.decode("ascii")

    def mpint(self, field: str) -> int:
        raw = self.string(field)
        if len(raw) > _MAX_MPINT_BYTES:
            raise WireError(f"{self._what}: {field} is too large")
        if raw and raw[0] & 0x80:
            raise WireError(f"{self._what}: {field} is negative")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        """Insist that everything was read: trailing bytes mean a different structure."""
        if self._pos != len(self._data):
            extra = len(self._data) - self._pos
            raise WireError(f"{self._what} has {extra} unexpected trailing bytes")
