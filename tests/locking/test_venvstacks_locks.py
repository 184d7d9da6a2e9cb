"""Locks written by venvstacks 0.8 are read, adopted when they match, relocked otherwise.

The fixture `tests/e2e/stacks/venvstacks08/requirements/` was written by venvstacks
0.8.0b2 itself (see the README there), so these tests check our reading of the real
format, not of our idea of it.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.pylock import Pylock

from venvlayers import LockError
from venvlayers.cli import main
from venvlayers.locking import LockOptions, evaluate_locks, lock_stack
from venvlayers.locking.files import LockPaths
from venvlayers.locking.pylock import parse_pylock
from venvlayers.spec import StackSpec

FIXTURE = Path(__file__).parents[1] / "e2e" / "stacks" / "venvstacks08"
ADOPTED = "adopted the venvstacks lock"
DEPLOYED = {
    "cpython-3.11": "cpython-3.11",
    "cpython-3.12": "cpython-3.12@2",
    "framework-alpha": "framework-alpha@5",
    "framework-tools": "framework-tools",
    "framework-alpha312": "framework-alpha312@2",
    "app-report": "app-report@3",
    "app-report312": "app-report312",
}


def copy_project(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("expected"))
    spec = dest / "venvstacks.toml"
    text = spec.read_text().replace('"PY311"', '"cpython@3.11.7"')
    spec.write_text(text.replace('"PY312"', '"cpython@3.12.1"'))
    return spec


def lock_files(spec: Path) -> dict[str, str]:
    root = spec.parent / "requirements"
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def pins(spec: Path, build_name: str) -> set[tuple[str, str, str, bool]]:
    """(name, version, marker, provided below) of a lock, whoever wrote it."""
    paths = LockPaths.of(spec.parent / "requirements", build_name)  # type: ignore[arg-type]
    packages = parse_pylock(paths.pylock.read_text(), str(paths.pylock))
    return {(p.name, str(p.version), str(p.marker or ""), p.shared) for p in packages}


def test_venvstacks_locks_read_as_adopted(tmp_path: Path) -> None:
    spec = copy_project(tmp_path / "project")
    states = evaluate_locks(StackSpec.load(spec))
    assert {name: s.deploy_name for name, s in states.items()} == DEPLOYED
    assert all(s.valid and s.adopted and s.reason == ADOPTED for s in states.values())
    # the wheel-less provided-below entries are read, as provided below
    assert ("vl-beta", "1.1", "", True) in pins(spec, "framework-alpha")


def test_show_json_says_adopted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = copy_project(tmp_path / "project")
    assert main(["show", str(spec), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    layers = [x for key in ("runtimes", "frameworks", "applications") for x in shown[key]]
    assert {x["name"]: x["install_target"] for x in layers} == DEPLOYED
    assert all(x["has_valid_lock"] and x["reason"] == ADOPTED for x in layers)
    assert main(["show", str(spec)]) == 0
    assert "*" not in capsys.readouterr().out  # no layer marked as lacking a lock


def test_lock_adopts_keeping_pins_versions_and_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = copy_project(tmp_path / "project")
    before = {name: pins(spec, name) for name in DEPLOYED}
    old_meta = {
        name: json.loads(LockPaths.of(spec.parent / "requirements", name).metadata.read_text())  # type: ignore[arg-type]
        for name in DEPLOYED
    }
    # no index and no wheels: adopting needs no resolution
    assert main(["lock", str(spec), "--no-index", "--json"]) == 0
    results = {r["layer"]: r for r in json.loads(capsys.readouterr().out)}
    for name, deployed in DEPLOYED.items():
        result = results[name]
        assert (result["action"], result["reason"]) == ("adopted", ADOPTED)
        assert result["install_target"] == deployed
        assert result["lock_version"] == old_meta[name]["lock_version"]
        assert result["locked_at"] == old_meta[name]["locked_at"]
        assert pins(spec, name) == before[name]
        paths = LockPaths.of(spec.parent / "requirements", name)  # type: ignore[arg-type]
        Pylock.from_dict(tomllib.loads(paths.pylock.read_text()))  # now strict PEP 751
        meta = json.loads(paths.metadata.read_text())
        assert set(meta) == set(old_meta[name])  # the same fields, our hashes
        assert paths.summary.name == f"packages-{name}.txt"
    states = evaluate_locks(StackSpec.load(spec))
    assert all(s.valid and not s.adopted for s in states.values())
    assert {name: s.deploy_name for name, s in states.items()} == DEPLOYED
    # the venvstacks requirements-*.in caches are left alone (documented)
    assert (spec.parent / "requirements/framework-alpha/requirements-framework-alpha.in").exists()
    written = lock_files(spec)
    assert main(["lock", str(spec), "--if-needed", "--no-index"]) == 0
    assert lock_files(spec) == written


def test_a_relock_from_a_venvstacks_lock_keeps_versions_when_pins_stay(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    """Resolved again (here: --upgrade-package of a package nobody can upgrade)."""
    spec = copy_project(tmp_path / "project")
    options = LockOptions(
        local_wheels=(wheelhouse_initial,), use_index=False, upgrade_packages=("vl-gamma",)
    )
    before = {name: pins(spec, name) for name in DEPLOYED}
    results = {r.build_name: r for r in lock_stack(StackSpec.load(spec), options)}
    for name, deployed in DEPLOYED.items():
        assert results[name].action == "relocked", name
        assert results[name].deploy_name == deployed
        own = {p for p in pins(spec, name) if not p[3]}
        assert own == {p for p in before[name] if not p[3]}


@pytest.mark.parametrize(
    ("change", "invalid"),
    [
        # requirements of one layer: it, and nothing else, needs a relock
        (
            lambda s: s.replace('requirements = ["vl-alpha<2"]\n', 'requirements = ["vl-alpha"]\n'),
            {"framework-alpha": "requirements changed since venvstacks locked this layer"},
        ),
        # venvstacks sorts support modules itself: their order changes nothing
        (
            lambda s: s.replace(
                '["support/zz_tools", "support/aa_helper.py"]',
                '["support/aa_helper.py", "support/zz_tools"]',
            ),
            {},
        ),
        # a layer restricted to fewer platforms than the lock was made for
        (
            lambda s: s.replace(
                'requirements = ["vl-zeta"]\n',
                'requirements = ["vl-zeta"]\nplatforms = ["linux_x86_64", "linux_aarch64"]\n',
            ),
            {"app-report312": "the venvstacks lock was made for other platforms"},
        ),
        # an OS target venvstacks records in its other inputs
        (
            lambda s: s.replace('name = "tools"\n', 'name = "tools"\nmacosx_target = "11.0"\n'),
            {"framework-tools": "the runtime, OS targets or lower layers changed"},
        ),
    ],
    ids=["requirements", "support-order", "platforms", "macosx-target"],
)
def test_what_stops_an_adoption(tmp_path: Path, change, invalid: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    spec = copy_project(tmp_path / "project")
    spec.write_text(change(spec.read_text()))
    states = evaluate_locks(StackSpec.load(spec))
    problems = {name: s.problem for name, s in states.items() if not s.valid}
    assert set(problems) == set(invalid)
    for name, message in invalid.items():
        assert message in str(problems[name])


def test_a_launch_module_edit_stops_a_versioned_app_adoption(tmp_path: Path) -> None:
    spec = copy_project(tmp_path / "project")
    (spec.parent / "apps" / "report.py").write_text("print('changed')\n")
    problems = {n: s.problem for n, s in evaluate_locks(StackSpec.load(spec)).items() if s.problem}
    assert list(problems) == ["app-report"]
    assert "versioned layer inputs" in str(problems["app-report"])


def test_an_edited_venvstacks_lock_is_not_adopted(tmp_path: Path) -> None:
    spec = copy_project(tmp_path / "project")
    lock = spec.parent / "requirements/framework-tools/pylock.framework-tools.toml"
    text = lock.read_text()
    digest = text.split('sha256 = "')[1][:64]
    lock.write_text(text.replace(digest, "0" * 64))
    state = evaluate_locks(StackSpec.load(spec))["framework-tools"]
    assert state.problem == "the lock file was edited or is incomplete"


def test_a_lower_layer_pin_change_stops_the_adoption_above(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    """framework-alpha relocked to vl-alpha 1.0: app-report, which shares it, must relock."""
    spec = copy_project(tmp_path / "project")
    text = spec.read_text().replace('["vl-alpha<2"]\nversioned', '["vl-alpha<1.1"]\nversioned')
    spec.write_text(text)
    other = copy_project(tmp_path / "other")  # where venvlayers relocks the framework
    other.write_text(text)
    options = LockOptions(local_wheels=(wheelhouse_initial,), use_index=False)
    lock_stack(StackSpec.load(other), options)
    shutil.rmtree(spec.parent / "requirements/framework-alpha")
    shutil.copytree(
        other.parent / "requirements/framework-alpha", spec.parent / "requirements/framework-alpha"
    )
    states = evaluate_locks(StackSpec.load(spec))
    assert states["framework-alpha"].valid and states["framework-alpha"].lock_version == 6
    assert "vl-alpha==1.1 is no longer pinned by a lower layer" in str(states["app-report"].problem)
    assert states["framework-tools"].adopted  # shares nothing with framework-alpha


def test_only_provided_below_entries_may_lack_wheels() -> None:
    text = """
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "vl-beta"
version = "1.1"
marker = "sys_platform == 'from_lower_layer'"

[[packages]]
name = "vl-alpha"
version = "1.1"
"""
    with pytest.raises(LockError, match="not a valid PEP 751 lock"):
        parse_pylock(text, "pylock.x.toml")
    (beta,) = parse_pylock(text.split('[[packages]]\nname = "vl-alpha"')[0], "pylock.x.toml")
    assert beta.shared and beta.wheels == ()
