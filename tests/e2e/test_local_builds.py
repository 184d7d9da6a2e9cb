"""Local builds (wheels tagged `linux_<arch>`) lock, build, deploy and move (issue 11).

`pip wheel`, setuptools and meson-python tag a C extension built on the machine itself
`cp311-cp311-linux_x86_64`. Such a wheel is accepted from a local wheel directory for
exactly the platform it names, with one warning; never from an index, never for
another platform.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Built, copy_scenario, run_app_json
from tests.plugins.runtime_fixture import RuntimeCache
from venvlayers import LockError, deploying
from venvlayers.locking import LockOptions, lock_stack
from venvlayers.locking.pylock import LockedWheel
from venvlayers.locking.resolve import Targets
from venvlayers.platforms import TargetPlatform, build_platform
from venvlayers.publishing import PublishOptions, publish_stack
from venvlayers.spec import StackSpec

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="native wheels are Linux-only"),
]


def _local_wheels(wheelhouse: Path, dest: Path) -> Path:
    """A --local-wheels directory holding only the local-build pair."""
    dest.mkdir()
    for wheel in wheelhouse.glob("vl_local*.whl"):
        shutil.copyfile(wheel, dest / wheel.name)
    assert len(list(dest.iterdir())) == 2
    return dest


def test_local_build_pair_across_two_layers_deploys_and_moves(
    tmp_path: Path,
    runtime_cache: RuntimeCache,
    wheelhouse: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = copy_scenario("localbuilds", tmp_path / "project", runtime_cache)
    wheels = _local_wheels(wheelhouse, tmp_path / "wheels")
    built = Built(spec, tmp_path / "project" / "_build", wheels)
    with caplog.at_level(logging.WARNING, logger="venvlayers"):
        results = lock_stack(built.stack, LockOptions(local_wheels=(wheels,), use_index=False))
    arch = build_platform().cpu
    by_layer = {r.build_name: r for r in results}
    assert by_layer["framework-localfoo"].local_builds == (
        next(wheels.glob("vl_localfoo-*.whl")).name,
    )
    assert by_layer["app-localext"].local_builds == (next(wheels.glob("vl_localext-*.whl")).name,)
    warnings = [r for r in caplog.records if "locally built" in r.getMessage()]
    assert len(warnings) == 1  # once per run, naming both wheels
    assert f"linux_{arch}" in warnings[0].getMessage()
    assert "vl_localext" in warnings[0].getMessage() and "vl_localfoo" in warnings[0].getMessage()

    built.build()
    out = tmp_path / "published"
    publish_stack(built.stack, PublishOptions(build_dir=built.build_dir, output_dir=out))
    target = tmp_path / "target"
    deploying.deploy(out, target)
    report = run_app_json(target / "app-localext", "localext_app")
    assert report["answer"] == 44 and report["origin"] == "vl-localfoo"
    (loaded,) = report["loaded"]
    assert Path(loaded).is_relative_to(target / "framework-localfoo")

    moved = tmp_path / "moved"
    target.rename(moved)
    report = run_app_json(moved / "app-localext", "localext_app")
    assert report["answer"] == 44
    assert report["prefix"].startswith(str(moved))
    (loaded,) = report["loaded"]
    assert Path(loaded).is_relative_to(moved / "framework-localfoo")

    # a relock that finds the lock valid does not warn again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="venvlayers"):
        lock_stack(
            built.stack, LockOptions(local_wheels=(wheels,), use_index=False, if_needed=True)
        )
    assert not [r for r in caplog.records if "locally built" in r.getMessage()]


def test_local_builds_are_refused_for_other_platforms(
    tmp_path: Path, runtime_cache: RuntimeCache, wheelhouse: Path
) -> None:
    spec = copy_scenario("localbuilds", tmp_path / "project", runtime_cache)
    here = build_platform()
    other = (
        TargetPlatform.LINUX_AARCH64
        if here != TargetPlatform.LINUX_AARCH64
        else (TargetPlatform.LINUX_X86_64)
    )
    spec.write_text(spec.read_text().replace(f'["{here}"]', f'["{here}", "{other}"]'))
    wheels = _local_wheels(wheelhouse, tmp_path / "wheels")
    with pytest.raises(LockError) as info:
        lock_stack(StackSpec.load(spec), LockOptions(local_wheels=(wheels,), use_index=False))
    message = str(info.value)
    assert f"no wheel for vl-localfoo 1.0 for {other}" in message
    assert f"set platforms = ['{here}']" in message


def test_local_build_tag_needs_a_local_file(tmp_path: Path, runtime_cache: RuntimeCache) -> None:
    """The same file name from an index is refused: indexes cannot host local builds."""
    spec = copy_scenario("localbuilds", tmp_path / "project", runtime_cache)
    layer = StackSpec.load(spec).frameworks["localfoo"]
    targets = Targets(layer)
    here = build_platform()
    py = "".join(runtime_cache.version.split(".")[:2])
    name = f"vl_localfoo-1.0-cp{py}-abi3-linux_{here.cpu}.whl"
    local = LockedWheel(filename=name, sha256="0" * 64, path=f"../../wheels/{name}")
    remote = LockedWheel(filename=name, sha256="0" * 64, url=f"https://example.invalid/{name}")
    assert targets.installable(local, here)
    assert not targets.installable(remote, here)
