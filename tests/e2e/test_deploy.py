"""Deploying real published stacks: update in place, kill -9, HTTP, full disks (issue 7).

The module fixture publishes the `layered` scenario twice: `v1`, and `v2` in which
app-one's launch module changed (same install target) and app-two was relocked
(`app-two@1` -> `app-two@2`). Tests deploy copies of these.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Built, scrubbed_env, verbose_imports
from tests.support.fakestack import http_root as http_root, snapshot
from venvlayers import deploying
from venvlayers.archives import ArchiveFormat
from venvlayers.errors import ArchiveError, DeployError
from venvlayers.publishing import ExportOptions, PublishOptions, export_stack, publish_stack

pytestmark = pytest.mark.e2e

REFERENCE = Path(__file__).parents[2] / "docs" / "deploy_reference.py"

ONE = """\
\"\"\"App one for the deploy tests: imports from every layer, reports, can wait and fail.\"\"\"

import json
import sys

import vl_alpha
import vl_beta
import vl_epsilon
import vl_fooext
import vl_foolib
import vl_gamma
import vl_pth_added
import vl_tool

VERSION = "{version}"
modules = [vl_alpha, vl_beta, vl_epsilon, vl_fooext, vl_foolib, vl_gamma, vl_pth_added, vl_tool]
report = {{m.__name__: m.__file__ for m in modules}}
report.update(version=VERSION, answer=vl_fooext.answer(), args=sys.argv[1:], prefix=sys.prefix)
if "--wait" in sys.argv:
    print("ready", flush=True)
    report["stdin"] = sys.stdin.readline().strip()
print(json.dumps(report), flush=True)
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
"""


@dataclass(frozen=True)
class Releases:
    v1: Path
    v2: Path
    v1_xz: Path
    built: Built


def _publish(built: Built, out: Path, **options: Any) -> Path:
    publish_stack(built.stack, PublishOptions(build_dir=built.build_dir, output_dir=out, **options))
    return out


@pytest.fixture(scope="module")
def releases(layered_stack: Built, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("releases")
    project = layered_stack.spec.parent
    (project / "one.py").write_text(ONE.format(version="v1"))
    layered_stack.build()
    v1 = _publish(layered_stack, root / "v1")
    v1_xz = _publish(layered_stack, root / "v1-xz", fmt=ArchiveFormat.TAR_XZ)
    (project / "one.py").write_text(ONE.format(version="v2"))
    spec = layered_stack.spec
    text = spec.read_text()
    assert 'requirements = ["vl-zeta", "vl-tool"]' in text
    spec.write_text(
        text.replace('requirements = ["vl-zeta", "vl-tool"]', 'requirements = ["vl-zeta"]')
    )
    layered_stack.lock()
    layered_stack.build()
    v2 = _publish(layered_stack, root / "v2")
    return Releases(v1, v2, v1_xz, layered_stack)


def targets(out: Path) -> list[str]:
    manifest = json.loads((out / "__venvstacks__/venvstacks.json").read_text())
    return sorted(x["install_target"] for layers in manifest["layers"].values() for x in layers)


def run_app(target: Path, app: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`venvlayers run` in a fresh process, as a user would, in a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "venvlayers", "run", app, "--target", str(target), "--", *args],
        capture_output=True,
        text=True,
        env=scrubbed_env(**env),
        check=False,
    )


def report(target: Path, app: str = "one", *args: str) -> dict[str, Any]:
    proc = run_app(target, app, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def layer_of(path: str, target: Path) -> str:
    return Path(path).relative_to(target).parts[0]


def no_leftovers(target: Path) -> None:
    assert not [p for p in target.iterdir() if p.name.startswith(".") and p.name != ".venvlayers"]
    state_dir = target / ".venvlayers"
    assert sorted(p.name for p in state_dir.iterdir()) == ["lock", "manifests", "state.json"]
    assert "transaction" not in json.loads((state_dir / "state.json").read_text())


# -- deploy, run, update ------------------------------------------------------------------


def test_deploy_and_run_each_app_from_its_layers(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "deployed"
    result = deploying.deploy(releases.v1, target)
    assert [x.action for x in result.layers] == ["installed"] * 6
    assert sorted(p.name for p in target.iterdir() if p.name[0] != ".") == targets(releases.v1)
    one = report(target, "one", "a", "b")
    assert one["version"] == "v1" and one["answer"] == 42 and one["args"] == ["a", "b"]
    expected = {
        "vl_alpha": "framework-base",
        "vl_beta": "cpython-rt",
        "vl_epsilon": "framework-left",
        "vl_fooext": "app-one",
        "vl_gamma": "framework-left",
        "vl_pth_added": "framework-base",
        "vl_tool": "framework-left",
    }
    assert {m: layer_of(one[m], target) for m in expected} == expected
    two = report(target, "two")
    assert layer_of(two["vl_zeta"], target) == "app-two@1"
    assert layer_of(two["helper"], target) == "app-two@1"
    assert two["vl_gamma_visible"] is False
    status = deploying.status(target, verify=True)
    assert not status.damaged and all(a.runnable for a in status.apps)
    no_leftovers(target)


def test_run_passes_stdin_exit_code_and_a_clean_environment(
    releases: Releases, tmp_path: Path
) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target, apps=["one"])
    # a module of the same name on the caller's PYTHONPATH must not shadow the layer's
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "vl_alpha.py").write_text("raise SystemExit('decoy imported')\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "venvlayers",
            "run",
            "one",
            "-t",
            str(target),
            "--",
            "--wait",
            "--exit",
            "7",
        ],
        input="hello\n",
        capture_output=True,
        text=True,
        env=scrubbed_env(PYTHONPATH=str(decoy), VIRTUAL_ENV=sys.prefix),
        check=False,
    )
    assert proc.returncode == 7, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "ready"
    out = json.loads(second)
    assert out["stdin"] == "hello" and out["args"] == ["--wait", "--exit", "7"]
    assert layer_of(out["vl_alpha"], target) == "framework-base"


def test_moving_the_whole_target_keeps_it_working(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    moved = tmp_path / "somewhere" / "else"
    moved.parent.mkdir()
    target.rename(moved)
    assert layer_of(report(moved)["vl_alpha"], moved) == "framework-base"
    assert not deploying.status(moved, verify=True).damaged
    assert {x.action for x in deploying.deploy(releases.v1, moved).layers} == {"unchanged"}


def test_an_update_replaces_only_what_changed(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    inodes = {p.name: p.stat().st_ino for p in target.iterdir()}
    result = deploying.deploy(releases.v2, target)
    actions = {x.install_target: x.action for x in result.layers}
    assert actions == {
        "cpython-rt": "unchanged",
        "framework-base": "unchanged",
        "framework-left": "unchanged",
        "framework-right@1": "unchanged",
        "app-one": "updated",
        "app-two@2": "installed",
    }
    assert result.removed == ("app-two@1",)
    after = {p.name: p.stat().st_ino for p in target.iterdir()}
    for name in ("cpython-rt", "framework-base", "framework-left", "framework-right@1"):
        assert after[name] == inodes[name]
    assert after["app-one"] != inodes["app-one"]
    assert report(target)["version"] == "v2"
    assert layer_of(report(target, "two")["vl_zeta"], target) == "app-two@2"
    assert not deploying.status(target, verify=True).damaged
    no_leftovers(target)


def test_an_app_running_during_an_update_finishes_normally(
    releases: Releases, tmp_path: Path
) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    command = deploying.app_command("one", location=target, args=["--wait"])
    running = subprocess.Popen(
        command.argv,
        env=dict(command.env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert running.stdout is not None
        assert running.stdout.readline() == "ready\n"
        deploying.deploy(releases.v2, target)
        assert report(target)["version"] == "v2"  # new starts run the new code...
        out, err = running.communicate("done\n", timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            running.kill()
    assert running.returncode == 0, err
    old = json.loads(out)  # ...while the one started before finishes with the old
    assert old["version"] == "v1" and old["stdin"] == "done" and old["answer"] == 42


def test_remove_an_app(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    removed = deploying.remove(target, "one").removed
    assert set(removed) == {"app-one", "framework-left"}
    assert report(target, "two")["vl_gamma_visible"] is False
    assert deploying.remove(target, "two").removed == (
        "app-two@1",
        "cpython-rt",
        "framework-base",
        "framework-right@1",
    )


def test_run_in_an_export_and_a_build_directory(releases: Releases, tmp_path: Path) -> None:
    built = releases.built
    export = tmp_path / "export"
    export_stack(built.stack, ExportOptions(build_dir=built.build_dir, output_dir=export))
    assert layer_of(report(export)["vl_fooext"], export) == "app-one"
    assert layer_of(report(export, "two")["vl_zeta"], export) == "app-two@2"
    build = built.build_dir
    assert report(build)["version"] == "v2"
    assert report(build, "app-two")["vl_gamma_visible"] is False
    proc = run_app(releases.v1, "one")
    assert proc.returncode == 1
    assert "is a published stack, not a deployment" in proc.stderr


# -- bad input ----------------------------------------------------------------------------


def test_tampered_and_truncated_archives_change_nothing(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    before = snapshot(target)
    bad = tmp_path / "v2-bad"
    shutil.copytree(releases.v2, bad)
    archive = bad / "app-one.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x20
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="has the wrong sha256"):
        deploying.deploy(bad, target)
    archive.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ArchiveError, match="has the wrong size"):
        deploying.deploy(bad, target)
    assert snapshot(target) == before
    assert report(target)["version"] == "v1"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB tmpfs (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_changes_nothing(releases: Releases, tiny_disk: Path) -> None:
    target = tiny_disk / "t"
    deploying.deploy(releases.v1, target)
    filler = tiny_disk / "filler"
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    with filler.open("wb") as f:
        f.truncate(0)
        with contextlib.suppress(OSError):
            f.write(b"\0" * (free - (20 << 10)))
    before = snapshot(target)
    with pytest.raises((ArchiveError, DeployError), match="disk full") as caught:
        deploying.deploy(releases.v2, target)
    assert "\n" not in str(caught.value)
    assert snapshot(target) == before
    assert report(target)["version"] == "v1"
    filler.unlink()
    deploying.deploy(releases.v2, target)
    assert report(target)["version"] == "v2"
    no_leftovers(target)


# -- SIGKILL ------------------------------------------------------------------------------

KILLER = textwrap.dedent("""\
    import os, signal, sys
    from pathlib import Path
    from venvlayers._util import fs as _fs
    from venvlayers.deploying import commit as _deploy_commit
    from venvlayers.deploying import extract as _deploy_extract
    from venvlayers.deploying import state as _deploy_state
    from venvlayers.deploying import operations as deploying, staging as _staging

    module, name, when, nth, source, target = sys.argv[1:]
    owner = {
        "deploying": deploying,
        "extract": _deploy_extract,
        "state": _deploy_state,
        "commit": _deploy_commit,
        "fs": _fs,
        "staging": _staging,
    }[module]
    real = getattr(owner, name)
    calls = []

    def hook(*args, **kwargs):
        calls.append(1)
        mine = len(calls)  # extraction runs in threads: count before the call
        if mine == int(nth) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if mine == int(nth) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, hook)
    deploying.deploy(source, Path(target))
    sys.exit("not killed")
    """)

# (module, function, before/after, nth call, how far the deploy got):
# "prepare": nothing moved yet; "commit": the transaction is recorded, some layers may be
# moved; "cleanup": the state is final, only the staging directory is left
KILL_POINTS = [
    ("extract", "extract_layer", "after", 1, "prepare"),
    ("staging", "_run_postinstall", "before", 2, "prepare"),
    ("state", "write_manifest", "after", 1, "prepare"),
    ("state", "write_state", "after", 1, "commit"),
    ("fs", "exchange", "after", 1, "commit"),
    ("state", "replace_dir", "after", 1, "commit"),
    ("commit", "_remove_layers", "after", 1, "commit"),
    ("state", "remove_quietly", "before", 2, "cleanup"),
]


@pytest.mark.parametrize(("module", "name", "when", "nth", "phase"), KILL_POINTS)
def test_sigkill_at_each_step_leaves_a_working_deployment(
    releases: Releases,
    tmp_path: Path,
    module: str,
    name: str,
    when: str,
    nth: int,
    phase: str,
) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    layers_before = {k: v for k, v in snapshot(target).items() if not k.startswith(".venvlayers")}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, module, name, when, str(nth), str(releases.v2), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = json.loads((target / ".venvlayers/state.json").read_text())
    assert ("transaction" in state) == (phase == "commit")
    staging = [p for p in (target / ".venvlayers").iterdir() if p.name.startswith("staging-")]
    assert staging  # a leftover for the next deploy to clean
    if phase == "prepare":
        after = {k: v for k, v in snapshot(target).items() if not k.startswith(".venvlayers")}
        assert after == layers_before
        assert report(target)["version"] == "v1"
    else:
        assert report(target)["version"] in ("v1", "v2")  # each layer is whole
    assert report(target, "two")["vl_gamma_visible"] is False
    result = deploying.deploy(releases.v2, target)
    assert report(target)["version"] == "v2"
    assert not (target / "app-two@1").exists()
    assert not deploying.status(target, verify=True).damaged
    no_leftovers(target)
    if phase != "prepare":
        assert {x.action for x in result.layers} == {"unchanged"}


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
def test_sigkill_at_random_moments(releases: Releases, tmp_path: Path, delay: float) -> None:
    """Kill a CLI deploy of the whole stack some time after it starts staging."""
    target = tmp_path / "t"
    target.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "venvlayers",
            "-q",
            "deploy",
            str(releases.v1),
            "--target",
            str(target),
        ],
        env={**os.environ},
    )
    deadline = time.monotonic() + 60
    state_dir = target / ".venvlayers"
    while time.monotonic() < deadline and proc.poll() is None:
        if state_dir.is_dir() and any(p.name.startswith("staging-") for p in state_dir.iterdir()):
            break
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deploying.deploy(releases.v1, target)
    assert report(target)["version"] == "v1"
    assert not deploying.status(target, verify=True).damaged
    no_leftovers(target)


# -- over HTTP ----------------------------------------------------------------------------


def test_deploy_over_http(
    releases: Releases,
    http_root: tuple[str, Path],
    tmp_path: Path,
) -> None:
    url, root = http_root
    shutil.copytree(releases.v1, root / "v1")
    target = tmp_path / "t"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "venvlayers",
            "deploy",
            f"{url}/v1/",
            "--target",
            str(target),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["layers"]) == 6
    assert report(target)["version"] == "v1"
    missing = subprocess.run(
        [sys.executable, "-m", "venvlayers", "deploy", f"{url}/v9", "--target", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read ") and "HTTP 404" in missing.stderr
    assert missing.stderr.count("\n") == 1


# -- the reference deployer ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar.xz", "tar.zst"])
def test_the_stdlib_reference_deployer(releases: Releases, tmp_path: Path, fmt: str) -> None:
    source = releases.v1_xz if fmt == "tar.xz" else releases.v1
    target = tmp_path / "t"
    # the interpreter the runtime came from, without venvlayers or zstandard
    python = Path(sys.base_prefix) / "bin" / "python3"
    env = scrubbed_env()
    if fmt == "tar.zst" and not shutil.which("zstd"):
        pytest.skip("no zstd command")
    deploy = subprocess.run(
        [python, "-I", REFERENCE, "deploy", source, target, "--app", "one"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert deploy.returncode == 0, deploy.stderr
    assert sorted(p.name for p in target.iterdir() if p.name[0] != ".") == [
        "app-one",
        "cpython-rt",
        "framework-base",
        "framework-left",
        "framework-right@1",
    ]
    run = subprocess.run(
        [python, "-I", REFERENCE, "run", target, "one", "--", "x", "--exit", "3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 3, run.stderr
    assert json.loads(run.stdout)["args"] == ["x", "--exit", "3"]
    # and venvlayers' own `run` finds the apps in it
    assert report(target)["answer"] == 42
    # the layers' postinstall compiled their bytecode: nothing is compiled at start-up
    _, from_source, _ = verbose_imports(target / "app-one", target)
    assert from_source == []
    # a tampered archive is refused
    bad = tmp_path / "bad"
    shutil.copytree(source, bad)
    archive = next(bad.glob("app-two@1.tar.*"))
    archive.write_bytes(archive.read_bytes()[:-1] + b"\0")
    refused = subprocess.run(
        [python, "-I", REFERENCE, "deploy", bad, tmp_path / "t2"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert refused.returncode == 1
    assert "sha256" in refused.stderr


# -- bytecode (issue 15) ------------------------------------------------------------------


def test_a_read_only_deployment_starts_from_bytecode_without_writing(
    releases: Releases, tmp_path: Path
) -> None:
    target = tmp_path / "t"
    result = deploying.deploy(releases.v1, target)
    assert all(layer.compiled > 0 for layer in result.layers)
    before = snapshot(target)
    subprocess.run(["chmod", "-R", "a-w", str(target)], check=True)
    try:
        from_pyc, from_source, stdout = verbose_imports(target / "app-one", target)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(target)], check=True)
    assert from_source == []  # nothing compiled at start-up
    stems = [(Path(p).name.split(".")[0], Path(p).parent.parent.name) for p in from_pyc]
    loaded = {package if stem == "__init__" else stem for stem, package in stems}
    assert {"vl_alpha", "vl_beta", "vl_fooext", "one", "sitecustomize", "json"} <= loaded
    assert json.loads(stdout)["answer"] == 42
    assert snapshot(target) == before
    assert not deploying.status(target, verify=True).damaged


def test_bytecode_stays_valid_after_a_move_and_a_copy(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    moved = tmp_path / "moved"
    os.rename(target, moved)
    copied = tmp_path / "copied"  # a plain copy: new mtimes, which timestamp pycs would fail
    shutil.copytree(moved, copied, symlinks=True, copy_function=shutil.copy)
    probe = (
        "import vl_alpha\nprint(vl_alpha.report.__code__.co_filename)\nprint(vl_alpha.__file__)\n"
    )
    for root in (moved, copied):
        from_pyc, from_source, stdout = verbose_imports(root / "app-one", root, probe)
        assert from_source == []
        code_file, module_file = stdout.split()
        # tracebacks name the code's file: the real path, not where it was compiled
        assert code_file == module_file
        assert code_file.startswith(str(root / "framework-base")), code_file
    from_pyc, from_source, _ = verbose_imports(copied / "app-one", copied)
    assert from_source == [] and from_pyc


def test_an_edited_deployed_file_is_used_and_flagged(releases: Releases, tmp_path: Path) -> None:
    target = tmp_path / "t"
    deploying.deploy(releases.v1, target)
    (module,) = target.glob("framework-base/lib/python*/site-packages/vl_alpha/__init__.py")
    module.write_text(module.read_text() + "\nEDITED = True\n")
    _, from_source, stdout = verbose_imports(
        target / "app-one", target, "import vl_alpha; print(vl_alpha.EDITED)"
    )
    assert stdout.strip() == "True"  # checked-hash bytecode notices the edit
    assert from_source == [str(module)]
    problems = {
        str(x.record.install_target): x.problems
        for x in deploying.status(target, verify=True).layers
    }
    assert any("vl_alpha/__init__.py" in p for p in problems["framework-base"])


def test_local_export_compiles_too(releases: Releases, tmp_path: Path) -> None:
    built = releases.built
    export = tmp_path / "export"
    export_stack(built.stack, ExportOptions(build_dir=built.build_dir, output_dir=export))
    _, from_source, stdout = verbose_imports(export / "app-one", export)
    assert from_source == [] and json.loads(stdout)["answer"] == 42
    bare = tmp_path / "bare"
    options = ExportOptions(build_dir=built.build_dir, output_dir=bare, compile_bytecode=False)
    export_stack(built.stack, options)
    assert not list(bare.glob("*/lib/python*/site-packages/**/*.pyc"))
