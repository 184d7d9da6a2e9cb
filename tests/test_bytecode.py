"""Which bytecode an archive ships: the size rule and how metadata records it."""

from __future__ import annotations

import pytest

from venvlayers.bytecode import shipped_bytecode, shipping_threshold, source_of_pyc


@pytest.mark.parametrize(
    ("sizes", "share", "threshold"),
    [
        ([100, 50, 30, 20], 0.5, 100),  # 100 of 200 bytes: exactly the share
        ([100, 50, 30, 20], 0.75, 50),  # 150 of 200
        ([100, 50, 30, 20], 0.4, None),  # not even the largest fits
        ([60, 60, 30, 50], 0.5, None),  # equal sizes go together or not at all: 120 > 100
        ([60, 60, 30, 50], 0.6, 60),
        ([10, 10, 10], 1.0, 10),
        ([], 0.5, None),
    ],
)
def test_the_largest_modules_up_to_a_share_of_the_source(
    sizes: list[int], share: float, threshold: int | None
) -> None:
    assert shipping_threshold(sizes, share) == threshold
    if threshold is not None:  # the rule "N bytes or more" ships at most the share
        assert sum(s for s in sizes if s >= threshold) <= share * sum(sizes)


def test_source_of_pyc() -> None:
    assert source_of_pyc("lib/site/pkg/__pycache__/mod.cpython-311.pyc") == "lib/site/pkg/mod.py"
    assert source_of_pyc("__pycache__/mod.pypy310.pyc") == "mod.py"
    assert source_of_pyc("lib/site/pkg/mod.pyc") is None  # not in a cache folder
    assert source_of_pyc("lib/site/__pycache__/mod.txt") is None


@pytest.mark.parametrize(
    ("options", "shipped"),
    [
        ({"bytecode": False}, False),
        ({"bytecode": True}, True),
        ({"bytecode": {"min_source_bytes": 8000}}, 8000),
        ({}, True),  # unknown: any .pyc may be in the archive
        (None, True),
        ({"bytecode": {"min_source_bytes": "big"}}, True),
    ],
)
def test_what_metadata_says_about_shipped_bytecode(options: object, shipped: object) -> None:
    assert shipped_bytecode(options) == shipped
