"""A venvstacks 0.8 project with its committed locks: adopted, built, published, deployed.

`stacks/venvstacks08/` holds the spec (two runtimes, 3.11 and 3.12, one versioned;
versioned frameworks and apps; support modules from a sibling directory), the locks
venvstacks 0.8 wrote for it and the metadata venvstacks published from them
(`expected/__venvstacks__/`). The published metadata must have venvstacks' layer names,
install targets, key sets (plus the fields venvlayers documents as its own) and lock
fields; every app must run from a deployed, moved target.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import STACKS, run_app_json
from tests.plugins.runtime_fixture import import_cached, local_cpython, seed_cache
from venvlayers import deploying
from venvlayers.archives import ArchiveFormat
from venvlayers.building import BuildOptions, build_stack
from venvlayers.locking import LockOptions, evaluate_locks, lock_stack
from venvlayers.publishing import PublishOptions, publish_stack
from venvlayers.runtimes import RuntimeArchive
from venvlayers.spec import StackSpec

pytestmark = pytest.mark.e2e

SCENARIO = STACKS / "venvstacks08"
EXPECTED = SCENARIO / "expected" / "__venvstacks__"
ADOPTED = "adopted the venvstacks lock"
# fields venvlayers adds to each layer's metadata (docs/concepts.md, "Published metadata")
OUR_FIELDS = {"build_inputs_hash", "archive_options"}
LOCK_FIELDS = ("requirements_hash", "lock_version", "locked_at")


@dataclass(frozen=True)
class Project:
    spec: Path
    build_dir: Path
    wheels: Path
    published: Path

    @property
    def stack(self) -> StackSpec:
        return StackSpec.load(self.spec)


def _expected_layers() -> dict[str, dict[str, Any]]:
    manifest = json.loads((EXPECTED / "venvstacks.json").read_text())
    return {x["layer_name"]: x for kind in manifest["layers"].values() for x in kind}


@pytest.fixture(scope="module")
def project(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    runtime_archive: RuntimeArchive,
    wheelhouse: Path,
) -> Iterator[Project]:
    if not runtime_archive.version.startswith("3.11."):
        pytest.skip("the project's first runtime is CPython 3.11")
    prefix = local_cpython("3.12")
    if prefix is None:
        pytest.skip("no CPython 3.12 on this machine (set VENVLAYERS_TEST_PYTHON_3_12)")
    rt312 = import_cached(request, prefix, "3.12")
    root = tmp_path_factory.mktemp("venvstacks08")
    cache = root / "cache"
    seed_cache(cache, runtime_archive, rt312)
    dest = root / "project"
    shutil.copytree(SCENARIO, dest, ignore=shutil.ignore_patterns("expected"))
    spec = dest / "venvstacks.toml"
    text = spec.read_text().replace('"PY311"', f'"{runtime_archive.name}"')
    spec.write_text(text.replace('"PY312"', f'"{rt312.name}"'))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VENVLAYERS_CACHE_DIR", str(cache))
        yield Project(spec, dest / "_build", wheelhouse, root / "published")


@pytest.fixture(scope="module")
def published(project: Project) -> dict[str, dict[str, Any]]:
    """Built and published straight from the venvstacks locks (before any `lock`)."""
    states = evaluate_locks(project.stack)
    assert all(s.adopted for s in states.values())
    build_stack(
        project.stack, BuildOptions(build_dir=project.build_dir, local_wheels=(project.wheels,))
    )
    publish_stack(
        project.stack,
        PublishOptions(
            build_dir=project.build_dir, output_dir=project.published, fmt=ArchiveFormat.TAR_XZ
        ),
    )
    manifest = json.loads((project.published / "__venvstacks__/venvstacks.json").read_text())
    return {x["layer_name"]: x for kind in manifest["layers"].values() for x in kind}


def test_published_metadata_matches_venvstacks(
    project: Project, published: dict[str, dict[str, Any]]
) -> None:
    expected = _expected_layers()
    ours_manifest = json.loads((project.published / "__venvstacks__/venvstacks.json").read_text())
    theirs_manifest = json.loads((EXPECTED / "venvstacks.json").read_text())
    assert set(ours_manifest) == set(theirs_manifest) == {"layers"}
    for kind, layers in theirs_manifest["layers"].items():
        assert [x["layer_name"] for x in ours_manifest["layers"][kind]] == [
            x["layer_name"] for x in layers
        ], kind
    assert set(published) == set(expected)
    for name, theirs in expected.items():
        ours = published[name]
        assert set(ours) == set(theirs) | OUR_FIELDS, name
        for key in ("install_target", "runtime_layer", "required_layers", "target_platform"):
            assert ours.get(key) == theirs.get(key), (name, key)
        for key in (*LOCK_FIELDS, "bound_to_implementation", "app_launch_module"):
            assert ours.get(key) == theirs.get(key), (name, key)
        assert ours["archive_name"] == theirs["archive_name"]  # same format, same name
        snippet = json.loads(
            (project.published / f"__venvstacks__/env_metadata/{name}.json").read_text()
        )
        assert snippet == ours
    # support modules: the spec's order (venvstacks 0.8.0b2 sorts them by path)
    report = published["app-report"]["app_support_modules"]
    assert [m["name"] for m in report] == ["zz_tools", "aa_helper"]
    assert sorted(m["name"] for m in expected["app-report"]["app_support_modules"]) == sorted(
        m["name"] for m in report
    )


def test_every_app_runs_deployed_and_moved(
    project: Project, published: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    target = tmp_path / "target"
    deploying.deploy(project.published, target)
    deployed = {p.name for p in target.iterdir() if not p.name.startswith(".")}
    assert {x["install_target"] for x in published.values()} <= deployed
    moved = tmp_path / "moved"
    target.rename(moved)
    report = run_app_json(moved / "app-report@3", "report")
    assert report["python"] == "3.11"
    assert report["prefix"].startswith(str(moved))
    layer_of = {
        k: Path(v).relative_to(moved).parts[0]
        for k, v in report.items()
        if k.startswith(("vl_", "zz", "aa"))
    }
    assert layer_of == {
        "vl_alpha": "framework-alpha@5",
        "vl_beta": "cpython-3.11",
        "vl_gamma": "app-report@3",
        "vl_tool": "framework-tools",
        "zz_tools": "app-report@3",
    }
    assert Path(report["helper"]).relative_to(moved).parts[0] == "app-report@3"
    report312 = run_app_json(moved / "app-report312", "report312")
    assert report312["python"] == "3.12"
    assert Path(report312["vl_alpha"]).relative_to(moved).parts[0] == "framework-alpha312@2"
    assert Path(report312["vl_zeta"]).relative_to(moved).parts[0] == "app-report312"


def test_lock_adopts_and_changes_no_pin_or_name(
    project: Project, published: dict[str, dict[str, Any]]
) -> None:
    """After the build: `lock` rewrites the files in our format, same pins and names."""
    requirements = project.spec.parent / "requirements"
    before = {p: tomllib.loads(p.read_text()) for p in requirements.rglob("pylock.*.toml")}
    results = lock_stack(
        project.stack, LockOptions(local_wheels=(project.wheels,), use_index=False)
    )
    assert {r.action for r in results} == {"adopted"}
    assert {r.reason for r in results} == {ADOPTED}
    assert {r.build_name: r.deploy_name for r in results} == {
        n: x["install_target"] for n, x in published.items()
    }
    for r in results:
        assert (r.lock_version, r.locked_at) == (
            published[r.build_name]["lock_version"],
            published[r.build_name]["locked_at"],
        )
    for path, old in before.items():
        new = tomllib.loads(path.read_text())
        assert [
            (p["name"], p["version"]) for p in sorted(old["packages"], key=lambda p: p["name"])
        ] == [(p["name"], p["version"]) for p in new["packages"]]
    states = evaluate_locks(project.stack)
    assert all(s.valid and not s.adopted for s in states.values())
