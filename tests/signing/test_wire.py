"""The SSH wire encoding: mpints as RFC 4251 spells them, and bounds-checked reads."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from venvlayers.signing.wire import WireError, WireReader, mpint, string, uint32


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        # the examples of RFC 4251 section 5
        (0, b"\0\0\0\0"),
        (0x9A378F9B2E332A7, b"\0\0\0\x08\x09\xa3\x78\xf9\xb2\xe3\x32\xa7"),
        (0x80, b"\0\0\0\x02\x00\x80"),
        (0x7F, b"\0\0\0\x01\x7f"),
    ],
)
def test_mpint_encoding(value: int, encoded: bytes) -> None:
    assert mpint(value) == encoded
    assert WireReader(encoded, "x").mpint("m") == value


@given(st.integers(min_value=0, max_value=2**4096))
def test_mpint_round_trip(value: int) -> None:
    reader = WireReader(mpint(value) + string("tail"), "x")
    assert reader.mpint("m") == value
    assert reader.text("t") == "tail"
    reader.end()


def test_reads_are_bounds_checked() -> None:
    with pytest.raises(WireError, match="x is truncated: the length of s runs past its end"):
        WireReader(b"\0\0", "x").string("s")
    with pytest.raises(WireError, match="x is truncated: s runs past its end"):
        WireReader(uint32(5) + b"abcd", "x").string("s")
    with pytest.raises(WireError, match="m is negative"):
        WireReader(string(b"\x80"), "x").mpint("m")
    with pytest.raises(WireError, match="m is too large"):
        WireReader(string(b"\x01" * 2100), "x").mpint("m")
    with pytest.raises(WireError, match="t is not printable ASCII"):
        WireReader(string(b"a\0b"), "x").text("t")
    reader = WireReader(string(b"") + b"!", "x")
    assert reader.string("s") == b""
    with pytest.raises(WireError, match="x has 1 unexpected trailing bytes"):
        reader.end()
    with pytest.raises(ValueError, match="negative"):
        mpint(-1)
