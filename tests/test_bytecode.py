"""Which bytecode an archive ships (the size rule, how metadata records it) and how
publish compiles it reproducibly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from venvlayers.bytecode import (
    BATCH,
    compile_layer,
    shipped_bytecode,
    shipping_threshold,
    source_of_pyc,
)
from venvlayers.errors import VenvLayersError


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


# -- reproducible compiling (published archives) -----------------------------------------

# CPython's marshal output depends on the compiling process's history (CPython issues
# 93317, 129724): a string the process has interned meanwhile is written as interned.
# Writing its first reply (a JSON list) interns "]" in the compile worker, so a module
# with a "]" constant compiles differently in the worker's first batch and in a later one.
_TARGET = 's = "]"\nt = [1, (2, 3), {4: "}"}]\n'


def _compiled(tmp_path: Path, fillers: int, *, reproducible: bool, jobs: int = 1) -> bytes:
    layer = tmp_path / f"layer-{fillers}-{reproducible}-{jobs}"
    (layer / "lib").mkdir(parents=True)
    paths = []
    for n in range(fillers):  # compiled before the target, in earlier batches
        (layer / "lib" / f"f{n:03}.py").write_text(f"x = [{n}]\n")
        paths.append(f"lib/f{n:03}.py")
    (layer / "lib" / "target.py").write_text(_TARGET)
    paths.append("lib/target.py")
    result = compile_layer(
        Path(sys.executable),
        layer,
        paths,
        error=VenvLayersError,
        jobs=jobs,
        reproducible=reproducible,
    )
    assert not result.failed and len(result.compiled) == len(paths)
    return (
        layer / "lib" / "__pycache__" / f"target.{sys.implementation.cache_tag}.pyc"
    ).read_bytes()


def test_reproducible_bytecode_does_not_depend_on_what_was_compiled_before(
    tmp_path: Path,
) -> None:
    alone = _compiled(tmp_path, 0, reproducible=True)
    assert _compiled(tmp_path, BATCH * 2, reproducible=True) == alone
    # nor on how the files are spread over worker processes
    assert _compiled(tmp_path, BATCH * 3, reproducible=True, jobs=2) == alone


def test_reproducible_bytecode_is_kept_only_when_asked(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "lib").mkdir(parents=True)
    (layer / "lib" / "mod.py").write_text("x = 1\n")
    python = Path(sys.executable)
    first = compile_layer(python, layer, ["lib/mod.py"], error=VenvLayersError)
    assert len(first.compiled) == 1
    again = compile_layer(python, layer, ["lib/mod.py"], error=VenvLayersError)
    assert again.kept == 1 and not again.compiled  # deploy: a matching .pyc stays
    fresh = compile_layer(python, layer, ["lib/mod.py"], error=VenvLayersError, reproducible=True)
    assert fresh.kept == 0 and len(fresh.compiled) == 1  # publish: compiled again


def test_reproducible_compiling_reports_files_that_do_not_compile(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "lib").mkdir(parents=True)
    (layer / "lib" / "py2.py").write_text("print 'hello'\n")
    (layer / "lib" / "ok.py").write_text("x = 1\n")
    result = compile_layer(
        Path(sys.executable),
        layer,
        ["lib/ok.py", "lib/py2.py"],
        error=VenvLayersError,
        reproducible=True,
    )
    assert [p for p, _ in result.failed] == ["lib/py2.py"]
    assert "SyntaxError" in result.failed[0][1]
    assert [e.path for e in result.compiled] == [
        f"lib/__pycache__/ok.{sys.implementation.cache_tag}.pyc"
    ]
