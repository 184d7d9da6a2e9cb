"""Locking: integrated, cross-platform, stable layer locks (offline, fixture wheels)."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.pylock import Pylock

from venvlayers import LockError
from venvlayers.locking import LockOptions, lock_stack
from venvlayers.locking.files import LockPaths
from venvlayers.locking.state import evaluate_locks
from venvlayers.spec import StackSpec

PY = "3.11.7"

THREE_LAYERS = f"""
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{PY}"
requirements = ["vl-beta"]
platforms = ["linux_x86_64", "linux_aarch64", "macosx_arm64", "win_amd64"]

[[frameworks]]
name = "base"
runtime = "cpython-3.11"
requirements = ["vl-alpha"]
versioned = true

[[applications]]
name = "app"
frameworks = ["base"]
requirements = ["vl-gamma", "vl-zeta"]
launch_module = "app.py"
"""


def make_stack(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text("print('app')\n")
    spec = root / "venvstacks.toml"
    spec.write_text(textwrap.dedent(text))
    return spec


def lock(spec: Path, wheels: Path, **options: object) -> dict[str, object]:
    stack = StackSpec.load(spec)
    opts = LockOptions(local_wheels=(wheels,), use_index=False, **options)  # type: ignore[arg-type]
    return {r.build_name: r for r in lock_stack(stack, opts)}


def pins(spec: Path, build_name: str) -> dict[str, str]:
    paths = LockPaths.of(spec.parent / "requirements", build_name)  # type: ignore[arg-type]
    data = tomllib.loads(paths.pylock.read_text())
    Pylock.from_dict(data)  # every lock is valid PEP 751
    return {p["name"]: p["version"] for p in data["packages"]}


def shared(spec: Path, build_name: str) -> set[str]:
    paths = LockPaths.of(spec.parent / "requirements", build_name)  # type: ignore[arg-type]
    data = tomllib.loads(paths.pylock.read_text())
    return {p["name"] for p in data["packages"] if "from_lower_layer" in p.get("marker", "")}


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "requirements").rglob("*"))
        if p.is_file()
    }


def test_three_layer_stack_locks_and_shares_lower_packages(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS)
    results = lock(spec, wheelhouse_initial)
    assert all(r.action == "locked" for r in results.values())  # type: ignore[attr-defined]
    assert pins(spec, "cpython-3.11") == {"vl-beta": "1.1"}
    assert pins(spec, "framework-base") == {"vl-alpha": "1.1", "vl-beta": "1.1"}
    assert shared(spec, "framework-base") == {"vl-beta"}
    app = pins(spec, "app-app")
    assert app["vl-gamma"] == "1.0" and app["vl-alpha"] == "1.1"
    assert shared(spec, "app-app") == {"vl-alpha", "vl-beta"}
    # vl-zeta needs vl-epsilon only on Windows: kept, conditional on win32
    data = tomllib.loads((spec.parent / "requirements/app-app/pylock.app-app.toml").read_text())
    eps = next(p for p in data["packages"] if p["name"] == "vl-epsilon")
    assert eps["marker"] == "sys_platform == 'win32'"
    summary = (spec.parent / "requirements/app-app/packages-app-app.txt").read_text()
    assert "vl-gamma==1.0" in summary
    assert "vl-alpha==1.1  # from framework-base" in summary
    meta = json.loads(
        (spec.parent / "requirements/framework-base/pylock.framework-base.meta.json").read_text()
    )
    assert set(meta) == {
        "requirements_hash",
        "lock_input_hash",
        "other_inputs_hash",
        "version_inputs_hash",
        "lock_version",
        "locked_at",
    }
    assert meta["lock_version"] == 1
    assert all(state.valid for state in evaluate_locks(StackSpec.load(spec)).values())


def test_lock_files_have_no_absolute_paths_and_relock_is_byte_identical(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS)
    lock(spec, wheelhouse_initial)
    before = snapshot(tmp_path)
    for name, content in before.items():
        assert str(tmp_path).encode() not in content, name
        assert b'path = "/' not in content and b"file://" not in content, name
    results = lock(spec, wheelhouse_initial)
    assert {r.action for r in results.values()} == {"relocked"}  # type: ignore[attr-defined]
    assert snapshot(tmp_path) == before
    # the same stack locked in another directory gives the same lock files
    other = make_stack(tmp_path / "elsewhere" / "deeper", THREE_LAYERS)
    lock(other, wheelhouse_initial)
    after = snapshot(other.parent)
    for name in before:
        if name.endswith(".meta.json"):
            continue  # locked_at differs between the two runs
        if name.endswith(".toml"):  # wheel paths are relative, so they differ by depth
            assert before[name].count(b"path = ") == after[name].count(b"path = ")
            continue
        assert after[name] == before[name], name


def test_wheel_paths_are_relative_to_the_lock(tmp_path: Path, wheelhouse_initial: Path) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS)
    lock(spec, wheelhouse_initial)
    lock_dir = spec.parent / "requirements" / "cpython-3.11"
    data = tomllib.loads((lock_dir / "pylock.cpython-3_11.toml").read_text())
    for package in data["packages"]:
        for wheel in package["wheels"]:
            assert "url" not in wheel
            assert (lock_dir / wheel["path"]).resolve().exists()


def test_stable_relock_after_adding_a_requirement(
    tmp_path: Path, wheelhouse_initial: Path, wheelhouse: Path
) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS)
    lock(spec, wheelhouse_initial)
    spec.write_text(spec.read_text().replace('"vl-zeta"]', '"vl-zeta", "vl-epsilon"]'))
    # newer vl-alpha, vl-beta and vl-epsilon are now available: no pin moves
    results = lock(spec, wheelhouse, if_needed=True)
    actions = {k: r.action for k, r in results.items()}  # type: ignore[attr-defined]
    assert actions == {"cpython-3.11": "valid", "framework-base": "valid", "app-app": "locked"}
    app = pins(spec, "app-app")
    assert app["vl-alpha"] == "1.1" and app["vl-beta"] == "1.1"
    # vl-epsilon was already pinned (for Windows, via vl-zeta): the pin is kept and is
    # now needed everywhere
    assert app["vl-epsilon"] == "1.0"
    data = tomllib.loads((spec.parent / "requirements/app-app/pylock.app-app.toml").read_text())
    assert "marker" not in next(p for p in data["packages"] if p["name"] == "vl-epsilon")
    # a full relock without --upgrade moves nothing either
    lock(spec, wheelhouse)
    assert pins(spec, "framework-base") == {"vl-alpha": "1.1", "vl-beta": "1.1"}


def test_upgrade_package_moves_only_that_pin(
    tmp_path: Path, wheelhouse_initial: Path, wheelhouse: Path
) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS.replace('["vl-gamma", "vl-zeta"]', '["vl-zeta"]'))
    lock(spec, wheelhouse_initial)
    results = lock(spec, wheelhouse, upgrade_packages=("vl-alpha",))
    assert pins(spec, "framework-base")["vl-alpha"] == "2.0"
    assert pins(spec, "cpython-3.11") == {"vl-beta": "1.1"}  # not moved
    base = results["framework-base"]
    assert base.action == "locked" and base.lock_version == 2  # type: ignore[attr-defined]
    assert str(base.deploy_name) == "framework-base@2"  # type: ignore[attr-defined]
    lock(spec, wheelhouse, upgrade=True)
    assert pins(spec, "cpython-3.11") == {"vl-beta": "2.0"}


def test_cross_layer_conflict_names_both_layers_and_requirements(
    tmp_path: Path, wheelhouse: Path
) -> None:
    text = THREE_LAYERS.replace('requirements = ["vl-beta"]', 'requirements = ["vl-beta<2"]')
    text = text.replace('["vl-gamma", "vl-zeta"]', '["vl-delta"]')
    spec = make_stack(tmp_path, text)
    with pytest.raises(LockError) as info:
        lock(spec, wheelhouse)
    message = str(info.value)
    assert message.startswith("app-app: conflicts with lower layer cpython-3.11 over vl-beta")
    assert "cpython-3.11 pins vl-beta==1.1" in message
    assert "vl-beta==2.0 (required by vl-delta" in message
    # all or nothing: the lower layers' locks were not written either
    assert not (spec.parent / "requirements").exists()


def test_missing_platform_wheel_suggests_platforms(tmp_path: Path, wheelhouse: Path) -> None:
    text = THREE_LAYERS.replace('requirements = ["vl-alpha"]', 'requirements = ["vl-linuxonly"]')
    spec = make_stack(tmp_path, text)
    with pytest.raises(LockError) as info:
        lock(spec, wheelhouse)
    message = str(info.value)
    assert "framework-base: no wheel for vl-linuxonly 1.0 for macosx_arm64, win_amd64" in message
    assert "platforms = ['linux_aarch64', 'linux_x86_64']" in message


def test_universal2_wheels_lock_for_both_macs(tmp_path: Path, wheelhouse: Path) -> None:
    """pyzmq/tornado-style: macOS wheels only as universal2 (issue 11, case 1)."""
    spec = make_stack(
        tmp_path,
        f"""
        [[runtimes]]
        name = "cpython-3.11"
        python_implementation = "cpython@{PY}"
        requirements = ["vl-universal2"]
        platforms = ["linux_x86_64", "macosx_arm64", "macosx_x86_64"]
        """,
    )
    lock(spec, wheelhouse)
    data = tomllib.loads(
        (tmp_path / "requirements/cpython-3.11/pylock.cpython-3_11.toml").read_text()
    )
    (package,) = data["packages"]
    names = sorted(w["path"].rpartition("/")[2] for w in package["wheels"])
    assert names == [
        "vl_universal2-1.0-cp39-abi3-macosx_10_9_universal2.whl",
        "vl_universal2-1.0-cp39-abi3-manylinux_2_17_x86_64.whl",
    ]


def test_linux_target_limits_manylinux_tags(tmp_path: Path, wheelhouse_initial: Path) -> None:
    text = THREE_LAYERS.replace('requirements = ["vl-alpha"]', 'requirements = ["vl-newglibc"]')
    text = text.replace("versioned = true", 'platforms = ["linux_x86_64"]')
    spec = make_stack(tmp_path, text)
    with pytest.raises(LockError, match=r"no wheel for vl-newglibc 1\.0 for linux_x86_64"):
        lock(spec, wheelhouse_initial)
    spec.write_text(
        spec.read_text().replace(
            'platforms = ["linux_x86_64"]',
            'platforms = ["linux_x86_64"]\nlinux_target = "glibc@2.34"',
        )
    )
    lock(spec, wheelhouse_initial)
    assert "vl-newglibc" in pins(spec, "framework-base")


def test_source_only_package_is_refused(tmp_path: Path, wheelhouse: Path) -> None:
    text = THREE_LAYERS.replace('requirements = ["vl-alpha"]', 'requirements = ["vl-sdistonly"]')
    spec = make_stack(tmp_path, text)
    with pytest.raises(LockError, match="vl-sdistonly"):
        lock(spec, wheelhouse)


def test_unknown_package_is_a_clear_error(tmp_path: Path, wheelhouse: Path) -> None:
    text = THREE_LAYERS.replace('requirements = ["vl-alpha"]', 'requirements = ["vl-nope"]')
    spec = make_stack(tmp_path, text)
    with pytest.raises(LockError, match=r"framework-base: cannot be locked: .*vl-nope"):
        lock(spec, wheelhouse)


def _invalid_layers(spec: Path) -> set[str]:
    return {name for name, s in evaluate_locks(StackSpec.load(spec)).items() if not s.valid}


VERSIONED_APP = THREE_LAYERS.replace(
    'launch_module = "app.py"', 'launch_module = "app.py"\nversioned = true'
)


@pytest.mark.parametrize(
    ("change", "invalid"),
    [
        (lambda s: s.replace('["vl-alpha"]', '["vl-alpha", "vl-epsilon"]'), {"framework-base"}),
        (
            lambda s: s.replace(PY, "3.11.9"),
            {"cpython-3.11", "framework-base", "app-app"},
        ),
        (
            lambda s: s.replace(
                "versioned = true\n\n", 'versioned = true\nlinux_target = "glibc@2.34"\n\n', 1
            ),
            {"framework-base"},
        ),
        (lambda s: s.replace('"vl-zeta"]', '"vl-zeta", "vl-tool"]'), {"app-app"}),
        (lambda s: s, set()),
    ],
    ids=["requirements", "runtime-version", "linux-target", "app-requirements", "nothing"],
)
def test_exactly_these_layers_become_invalid(
    tmp_path: Path, wheelhouse_initial: Path, change: object, invalid: set[str]
) -> None:
    spec = make_stack(tmp_path, VERSIONED_APP)
    lock(spec, wheelhouse_initial)
    assert _invalid_layers(spec) == set()
    spec.write_text(change(spec.read_text()))  # type: ignore[operator]
    assert _invalid_layers(spec) == invalid


def test_launch_module_edit_invalidates_only_a_versioned_app(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    spec = make_stack(tmp_path, VERSIONED_APP)
    lock(spec, wheelhouse_initial)
    (tmp_path / "app.py").write_text("print('changed')\n")
    assert _invalid_layers(spec) == {"app-app"}
    results = lock(spec, wheelhouse_initial, if_needed=True)
    app = results["app-app"]
    assert app.action == "relocked" and app.lock_version == 2  # type: ignore[attr-defined]


def test_reordering_support_modules_keeps_a_versioned_app_lock(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    """The same modules are deployed whatever their order: no relock, no new version.

    Only the published `app_support_modules` follow the new order (republished metadata).
    """
    for name in ("one.py", "two.py"):
        (tmp_path / name).write_text("")
    text = VERSIONED_APP.replace(
        'launch_module = "app.py"',
        'launch_module = "app.py"\nsupport_modules = ["one.py", "two.py"]',
    )
    spec = make_stack(tmp_path, text)
    lock(spec, wheelhouse_initial)
    spec.write_text(spec.read_text().replace('["one.py", "two.py"]', '["two.py", "one.py"]'))
    assert _invalid_layers(spec) == set()
    app = StackSpec.load(spec).applications["app"]
    assert [p.name for p in app.support_modules] == ["two.py", "one.py"]


def test_a_lower_layer_pin_change_invalidates_layers_above(
    tmp_path: Path, wheelhouse_initial: Path, wheelhouse: Path
) -> None:
    text = THREE_LAYERS.replace('["vl-gamma", "vl-zeta"]', '["vl-zeta", "vl-alpha"]')
    spec = make_stack(tmp_path, text)
    lock(spec, wheelhouse_initial)
    lock(spec, wheelhouse, include=("framework-base",), upgrade_packages=("vl-alpha",))
    # the app was relocked with the base (derived layer) and is valid again
    assert _invalid_layers(spec) == set()
    assert pins(spec, "app-app")["vl-alpha"] == "2.0"
    # edit the base's lock behind the tool's back: the base and the app become invalid
    base = spec.parent / "requirements/framework-base/pylock.framework-base.toml"
    base.write_text(base.read_text().replace('version = "2.0"', 'version = "1.1"'))
    assert _invalid_layers(spec) == {"framework-base", "app-app"}


def test_if_needed_and_reset_lock(
    tmp_path: Path, wheelhouse_initial: Path, wheelhouse: Path
) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS)
    lock(spec, wheelhouse_initial)
    results = lock(spec, wheelhouse, if_needed=True)
    assert {r.action for r in results.values()} == {"valid"}  # type: ignore[attr-defined]
    results = lock(spec, wheelhouse, if_needed=True, reset_lock=("cpython-*",))
    # the runtime is re-resolved from scratch and moves to the newest vl-beta
    assert pins(spec, "cpython-3.11") == {"vl-beta": "2.0"}
    assert results["cpython-3.11"].action == "locked"  # type: ignore[attr-defined]


def test_include_locks_missing_dependencies_and_relocks_derived_layers(
    tmp_path: Path, wheelhouse_initial: Path
) -> None:
    spec = make_stack(tmp_path, THREE_LAYERS)
    results = lock(spec, wheelhouse_initial, include=("app-app",))
    assert {k: r.action for k, r in results.items()} == {  # type: ignore[attr-defined]
        "cpython-3.11": "locked",
        "framework-base": "locked",
        "app-app": "locked",
    }
    results = lock(spec, wheelhouse_initial, include=("app-app",))
    assert results["framework-base"].action == "valid"  # type: ignore[attr-defined]
    results = lock(spec, wheelhouse_initial, include=("app-app",), lock_dependencies=True)
    assert results["framework-base"].action == "relocked"  # type: ignore[attr-defined]
    results = lock(spec, wheelhouse_initial, include=("framework-base",))
    assert set(results) == {"cpython-3.11", "framework-base", "app-app"}
    assert results["app-app"].action == "relocked"  # type: ignore[attr-defined]
    assert results["cpython-3.11"].action == "valid"  # type: ignore[attr-defined]
    assert _invalid_layers(spec) == set()


def test_exclude_newer_sets_locked_at(tmp_path: Path, wheelhouse_initial: Path) -> None:
    spec = make_stack(
        tmp_path, THREE_LAYERS + '\n[tool.uv]\nexclude-newer = "2030-01-02T03:04:05Z"\n'
    )
    results = lock(spec, wheelhouse_initial)
    assert {r.locked_at for r in results.values()} == {  # type: ignore[attr-defined]
        "2030-01-02T03:04:05+00:00"
    }


def test_user_uv_config_and_env_do_not_leak(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "xdg" / "uv"
    config.mkdir(parents=True)
    (config / "uv.toml").write_text('index-url = "http://127.0.0.1:9/simple"\nno-binary = true\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_CONSTRAINT", str(tmp_path / "nope.txt"))
    spec = make_stack(tmp_path / "stack", THREE_LAYERS.replace('"vl-gamma", ', ""))
    lock(spec, wheelhouse)
    assert pins(spec, "cpython-3.11") == {"vl-beta": "2.0"}


def test_lock_cli_json_and_errors(
    tmp_path: Path, wheelhouse_initial: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from venvlayers.cli import main

    spec = make_stack(tmp_path, THREE_LAYERS)
    args = ["lock", str(spec), "--no-index", "--local-wheels", str(wheelhouse_initial)]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [x["layer"] for x in data] == ["cpython-3.11", "framework-base", "app-app"]
    assert data[1]["install_target"] == "framework-base@1"
    assert main(["show", str(spec)]) == 0
    assert "*" not in capsys.readouterr().out
    spec.write_text(spec.read_text().replace('["vl-alpha"]', '["vl-nope"]'))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: framework-base: cannot be locked") and "Traceback" not in err
