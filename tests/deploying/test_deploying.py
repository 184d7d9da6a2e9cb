"""Deploying, running, inspecting and removing stacks, on small fake published stacks.

The fake runtime's `bin/python3.11` is a shell script that runs the test interpreter
with the invoking layer's `lib/site` on the path, so that layers, archives, metadata and
postinstall are real while a whole deploy takes a fraction of a second. The real
stacks are deployed in `tests/e2e/test_deploy.py`.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import py_compile
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

import venvlayers
import venvlayers.bytecode
from tests.support.archives import tar_member, write_tar
from tests.support.fakestack import (
    HELLO,
    PLATFORM,
    FakeStack,
    edit_metadata,
    http_root as http_root,
    layer_entry,
    leftovers,
    replace_archive,
    run_hello,
    snapshot,
)
from tests.support.reporting import RecordingReporter
from venvlayers import deploying
from venvlayers.archives import ArchiveFormat, extract as _archive_extract, write_archive
from venvlayers.cli import main
from venvlayers.deploying import extract as _deploy_extract, state as _deploy_state
from venvlayers.deploying.source import StackSource, select_published as select_layers
from venvlayers.errors import ArchiveError, DeployError
from venvlayers.platforms import TargetPlatform
from venvlayers.published import parse_layers
from venvlayers.selection import Selection

FW_PYC = f"fw.{sys.implementation.cache_tag}.pyc"


@pytest.fixture
def stack(tmp_path: Path) -> FakeStack:
    return FakeStack(tmp_path / "stack")


@pytest.fixture
def published(stack: FakeStack, tmp_path: Path) -> Path:
    return stack.publish(tmp_path / "out")


@pytest.fixture
def deployed(published: Path, tmp_path: Path) -> Path:
    target = tmp_path / "target"
    deploying.deploy(published, target)
    return target


def test_sources_are_parsed(tmp_path: Path) -> None:
    assert StackSource.parse(tmp_path).directory == tmp_path
    meta = tmp_path / "__venvstacks__" / "venvstacks.json"
    assert StackSource.parse(meta).directory == tmp_path
    assert StackSource.parse(tmp_path.as_uri()).directory == tmp_path
    url = StackSource.parse("https://example.invalid/stack/")
    assert url.base_url == "https://example.invalid/stack"
    full = StackSource.parse("http://h/s/__venvstacks__/venvstacks.json")
    assert full.base_url == "http://h/s"
    with pytest.raises(DeployError, match="unsupported URL scheme 'ftp'"):
        StackSource.parse("ftp://h/s")
    with pytest.raises(DeployError, match="only local file:// URLs"):
        StackSource.parse("file://otherhost/x")


def test_a_directory_without_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="is not a published stack: it has no __venvstacks__"):
        deploying.deploy(tmp_path, tmp_path / "t")
    with pytest.raises(DeployError, match="no such directory"):
        deploying.deploy(tmp_path / "nope", tmp_path / "t")


def test_metadata_problems_are_reported_together(published: Path) -> None:
    def break_it(data: dict[str, Any]) -> None:
        layer_entry(data, "app-hello")["install_target"] = "../evil"
        layer_entry(data, "app-other")["archive_hashes"] = {"sha256": "abc"}
        layer_entry(data, "framework-fw")["archive_name"] = "sub/x.tar.gz"
        layer_entry(data, "rt")["target_platform"] = "amiga_68k"

    edit_metadata(published, break_it)
    with pytest.raises(DeployError) as caught:
        StackSource.parse(published).load()
    message = str(caught.value)
    assert "\n" not in message
    assert "layers.applications[0] (app-hello): 'install_target': '../evil'" in message
    assert "(app-other): 'archive_hashes.sha256' must be 64 lowercase hex digits" in message
    assert "(framework-fw): 'archive_name' 'sub/x.tar.gz' is not a plain" in message
    assert "(rt): unknown 'target_platform' 'amiga_68k'" in message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("install_target", ".venvlayers", "starts with a dot"),
        ("install_target", "", "must be a non-empty string"),
        ("runtime_layer", "a/b", "not a plain directory name"),
        ("archive_size", "12", "'archive_size' must be a int"),
        ("archive_size", -1, "negative"),
        ("required_layers", "fw", "not a list"),
        ("app_launch_module", "hello world", "not a module name"),
    ],
)
def test_bad_fields(published: Path, field: str, value: object, reason: str) -> None:
    edit_metadata(published, lambda d: layer_entry(d, "app-hello").__setitem__(field, value))
    with pytest.raises(DeployError, match=reason):
        StackSource.parse(published).load()


def test_an_export_directory_is_not_deployable(published: Path) -> None:
    def strip(data: dict[str, Any]) -> None:
        del layer_entry(data, "rt")["archive_name"]

    edit_metadata(published, strip)
    with pytest.raises(DeployError, match=r"has no archive fields.*venvlayers publish"):
        StackSource.parse(published).load()


def test_selection(published: Path) -> None:
    stack = StackSource.parse(published).load()

    def order(selection: Selection[Any]) -> list[str]:
        return [x.install_target for x in selection.layers]

    everything = select_layers(stack, (), PLATFORM)
    assert order(everything) == ["rt", "framework-fw", "app-hello", "app-other@1"]
    assert {x.install_target for x in everything.matched} == {"app-hello", "app-other@1"}
    for name in ("hello", "app-hello"):
        assert order(select_layers(stack, [name], PLATFORM)) == ["rt", "framework-fw", "app-hello"]
    assert order(select_layers(stack, ["app-other@1"], PLATFORM)) == ["rt", "app-other@1"]
    assert order(select_layers(stack, ["framework-fw"], PLATFORM)) == ["rt", "framework-fw"]
    with pytest.raises(
        DeployError, match=r"no layer named 'nope' .*\(applications: hello, other\)"
    ):
        select_layers(stack, ["nope"], PLATFORM)


def test_a_layer_missing_from_the_metadata_is_refused(published: Path, tmp_path: Path) -> None:
    edit_metadata(
        published,
        lambda d: layer_entry(d, "app-hello").__setitem__("required_layers", ["framework-gone"]),
    )
    message = "app-hello requires layer 'framework-gone', which it does not list"
    with pytest.raises(DeployError, match=message):
        deploying.deploy(published, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    # the other app does not need it
    deploying.deploy(published, tmp_path / "t", apps=["other"])


def test_metadata_for_another_platform_is_refused(stack: FakeStack, tmp_path: Path) -> None:
    other = "linux_aarch64" if PLATFORM != TargetPlatform.LINUX_AARCH64 else "linux_x86_64"
    out = stack.publish(tmp_path / "out", platform=other)
    with pytest.raises(DeployError, match=f"holds layers for {other}, not {PLATFORM}"):
        deploying.deploy(out, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    native = stack.publish(tmp_path / "native")
    edit_metadata(
        native, lambda d: layer_entry(d, "app-hello").__setitem__("target_platform", other)
    )
    with pytest.raises(DeployError, match=f"'hello' is published for {other} only"):
        select_layers(StackSource.parse(native).load(), ["hello"], PLATFORM)


def test_another_cpu_is_deployed_with_our_interpreter(stack: FakeStack, tmp_path: Path) -> None:
    other = "linux_aarch64" if PLATFORM != TargetPlatform.LINUX_AARCH64 else "linux_x86_64"
    out = stack.publish(tmp_path / "out", platform=other)
    result = deploying.deploy(out, tmp_path / "t", platform=other)
    assert result.platform == other
    assert os.readlink(tmp_path / "t/app-hello/bin/python") == "../../rt/bin/python3.11"
    with pytest.raises(DeployError, match=r"holds a .* deployment; deploy"):
        deploying.deploy(stack.publish(tmp_path / "native"), tmp_path / "t")


def test_unknown_and_foreign_os_platforms(published: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DeployError, match="unknown platform 'linux_amd64'; did you mean linux_x86_64"
    ):
        deploying.deploy(published, tmp_path / "t", platform="linux_amd64")
    with pytest.raises(DeployError, match="postinstall step must run on the same kind"):
        deploying.deploy(published, tmp_path / "t", platform="win_amd64")


def test_dependency_cycles_are_refused(published: Path) -> None:
    def cycle(data: dict[str, Any]) -> None:
        fw = layer_entry(data, "framework-fw")
        fw["required_layers"] = ["app-hello"]

    edit_metadata(published, cycle)
    with pytest.raises(DeployError, match="dependency cycle"):
        select_layers(StackSource.parse(published).load(), [], PLATFORM)


def test_parse_layers_needs_a_layers_object() -> None:
    with pytest.raises(DeployError, match="not a stack manifest"):
        parse_layers([], "x.json")


# -- deploying ---------------------------------------------------------------------------


def test_deploy_installs_every_layer_and_records_it(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    result = deploying.deploy(published, target)
    assert [(x.install_target, x.action) for x in result.layers] == [
        ("rt", "installed"),
        ("framework-fw", "installed"),
        ("app-hello", "installed"),
        ("app-other@1", "installed"),
    ]
    assert sorted(p.name for p in target.iterdir()) == [
        ".venvlayers",
        "app-hello",
        "app-other@1",
        "framework-fw",
        "rt",
    ]
    state = json.loads((target / ".venvlayers/state.json").read_text())
    assert state["format"] == 1
    assert state["roots"] == {"app-hello": "app-hello", "app-other": "app-other@1"}
    hello = state["layers"]["app-hello"]
    assert hello["required_layers"] == ["framework-fw"]
    assert hello["app_launch_module"] == "hello"
    assert "transaction" not in state
    manifest = json.loads(
        (target / ".venvlayers/manifests" / f"{hello['archive_sha256']}.json").read_text()
    )
    paths = {entry["path"]: entry for entry in manifest}
    assert paths["bin/python"] == {
        "path": "bin/python",
        "kind": "symlink",
        "target": "../../rt/bin/python3.11",
    }
    assert "lib/site/hello.py" in paths
    assert leftovers(target) == []
    proc = run_hello(target, "a", "b")
    assert proc.stdout.split() == ["v1", "a", "b"], proc.stderr
    assert run_hello(target, app="other").stdout == "other\n"


def test_redeploying_the_same_stack_touches_nothing(published: Path, deployed: Path) -> None:
    before = snapshot(deployed)
    result = deploying.deploy(published, deployed)
    assert {x.action for x in result.layers} == {"unchanged"}
    after = snapshot(deployed)
    assert {k: v for k, v in after.items() if k != ".venvlayers/state.json"} == {
        k: v for k, v in before.items() if k != ".venvlayers/state.json"
    }


def test_a_one_app_change_replaces_one_directory(
    stack: FakeStack, published: Path, deployed: Path
) -> None:
    before = snapshot(deployed)
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.publish(published)
    result = deploying.deploy(published, deployed)
    assert [x.install_target for x in result.changed] == ["app-hello"]
    assert result.changed[0].action == "updated"
    after = snapshot(deployed)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k.split("/")[0] for k in changed} == {"app-hello", ".venvlayers"}
    assert run_hello(deployed).stdout.split() == ["v2"]
    assert leftovers(deployed) == []


def test_a_new_version_replaces_the_old_one(
    stack: FakeStack, published: Path, deployed: Path
) -> None:
    stack.layers["app-other"]["install_target"] = "app-other@2"
    stack.layers["app-other"]["files"]["lib/site/other.py"] = "print('other 2')\n"
    (published / "app-other@1.tar.gz").unlink()
    stack.publish(published)
    result = deploying.deploy(published, deployed)
    assert result.removed == ("app-other@1",)
    assert not (deployed / "app-other@1").exists()
    assert run_hello(deployed, app="other").stdout == "other 2\n"
    state = json.loads((deployed / ".venvlayers/state.json").read_text())
    assert state["roots"]["app-other"] == "app-other@2"
    assert len(list((deployed / ".venvlayers/manifests").iterdir())) == 4


def test_apps_deployed_one_by_one_are_kept(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "t"
    first = deploying.deploy(published, target, apps=["other"])
    assert [x.install_target for x in first.layers] == ["rt", "app-other@1"]
    second = deploying.deploy(published, target, apps=["hello"])
    assert [x.action for x in second.layers] == ["unchanged", "installed", "installed"]
    assert second.removed == ()
    assert (target / "app-other@1").is_dir()


def test_a_full_deploy_drops_apps_gone_from_the_stack(
    stack: FakeStack, published: Path, deployed: Path
) -> None:
    del stack.layers["app-hello"]
    (published / "app-hello.tar.gz").unlink()
    stack.publish(published)
    result = deploying.deploy(published, deployed)
    # the stack still has the framework, which no app needs: it is kept for itself
    assert result.removed == ("app-hello",)
    assert json.loads((deployed / ".venvlayers/state.json").read_text())["roots"] == {
        "app-other": "app-other@1",
        "framework-fw": "framework-fw",
    }
    del stack.layers["framework-fw"]
    (published / "framework-fw.tar.gz").unlink()
    stack.publish(published)
    assert deploying.deploy(published, deployed).removed == ("framework-fw",)
    assert sorted(p.name for p in deployed.iterdir()) == [".venvlayers", "app-other@1", "rt"]


def test_force_reinstalls(published: Path, deployed: Path) -> None:
    result = deploying.deploy(published, deployed, force=True)
    assert {x.action for x in result.layers} == {"updated"}
    assert run_hello(deployed).stdout.split() == ["v1"]


def test_a_deleted_layer_directory_is_reinstalled(published: Path, deployed: Path) -> None:
    venvlayers._util.fs.remove_tree(deployed / "framework-fw")
    result = deploying.deploy(published, deployed)
    assert [x.install_target for x in result.changed] == ["framework-fw"]


def test_every_archive_format_deploys(stack: FakeStack, tmp_path: Path) -> None:
    for fmt in ArchiveFormat:
        out = stack.publish(tmp_path / f"out-{fmt.value}", fmt=fmt)
        target = tmp_path / f"t-{fmt.value}"
        deploying.deploy(out, target)
        assert run_hello(target).stdout.split() == ["v1"]


def test_the_target_can_be_moved_as_a_whole(deployed: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    deployed.rename(moved)
    assert run_hello(moved).stdout.split() == ["v1"]
    assert not deploying.status(moved, verify=True).damaged


# -- bytecode ------------------------------------------------------------------------------


def pyc_flags(pyc: Path) -> int:
    """PEP 552 flags of a .pyc: 0b11 = checked hash, 0b01 = unchecked hash, 0 = timestamp."""
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER
    return int.from_bytes(header[4:8], "little")


def test_deploy_compiles_with_the_runtimes_interpreter_in_a_clean_environment(
    stack: FakeStack, published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VL_TEST_LEAK", "yes")
    target = tmp_path / "target"
    result = deploying.deploy(published, target)
    sources = sorted(target.glob("*/lib/site/*.py"))
    assert {p.parent.parent.parent.name for p in sources} == {
        "rt",
        "framework-fw",
        "app-hello",
        "app-other@1",
    }
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        assert pyc_flags(pyc) == 0b11, pyc
        assert stat.S_IMODE(pyc.stat().st_mode) == 0o644
    assert {x.install_target: x.compiled for x in result.layers} == {
        "rt": 1,
        "framework-fw": 1,
        "app-hello": 1,
        "app-other@1": 1,
    }
    workers = [
        line for line in stack.python_log.read_text().splitlines() if "--compile-worker" in line
    ]
    assert workers, "no compile worker ran through the runtime's bin/python3.11"
    staged_runtime = "/.venvlayers/staging-"
    assert all(staged_runtime in line.split()[0] for line in workers)
    assert all(line.endswith("leak=") for line in workers)  # the caller's environment stayed out
    # the compiled files are in the manifest, so --verify checks them
    manifest = _deploy_state.read_manifest(target, layer_entry_sha(published, "framework-fw"))
    assert f"lib/site/__pycache__/{FW_PYC}" in {e.path for e in manifest}


def layer_entry_sha(out: Path, layer_name: str) -> str:
    data = json.loads((out / "__venvstacks__" / "venvstacks.json").read_text())
    return str(layer_entry(data, layer_name)["archive_hashes"]["sha256"])


def test_a_file_that_does_not_compile_is_one_warning(stack: FakeStack, tmp_path: Path) -> None:
    fw = stack.layers["framework-fw"]["files"]
    fw["lib/site/legacy.py"] = "print 'Python 2'\n"
    fw["lib/site/fine.py"] = "Y = 2\n"
    published = stack.publish(tmp_path / "out")
    notes = RecordingReporter()
    result = deploying.deploy(published, tmp_path / "target", reporter=notes)
    layers = {x.install_target: x for x in result.layers}
    assert layers["framework-fw"].not_compiled == ("lib/site/legacy.py",)
    assert layers["framework-fw"].compiled == 2
    warnings = [n for n in notes.notes if "legacy.py" in n]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "warning: framework-fw: cannot compile lib/site/legacy.py: SyntaxError:"
    )
    site = tmp_path / "target/framework-fw/lib/site"
    assert not list(site.glob("__pycache__/legacy.*"))
    assert list(site.glob("__pycache__/fine.*.pyc"))
    assert not deploying.status(tmp_path / "target", verify=True).damaged


def test_no_compile_then_compile_then_unchanged(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    first = deploying.deploy(published, target, compile_bytecode=False)
    assert not list(target.glob("*/lib/site/__pycache__/*.pyc"))
    assert all(x.compiled == 0 for x in first.layers)
    assert run_hello(target).stdout.split() == ["v1"]
    # deployed without bytecode: a deploy that wants it installs the layers again
    second = deploying.deploy(published, target)
    assert {x.action for x in second.layers} == {"updated"}
    pycs = sorted(target.glob("*/lib/site/__pycache__/*.pyc"))
    assert len(pycs) == 4
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pycs}
    third = deploying.deploy(published, target)
    assert {x.action for x in third.layers} == {"unchanged"}
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pycs} == before
    # and --no-compile keeps what is there
    fourth = deploying.deploy(published, target, compile_bytecode=False)
    assert {x.action for x in fourth.layers} == {"unchanged"}


def test_postinstall_compiles_for_embedders_and_warns_once(
    stack: FakeStack, tmp_path: Path
) -> None:
    """What an embedding application that follows the protocol gets from postinstall."""
    fw = stack.layers["framework-fw"]["files"]
    fw["lib/site/legacy.py"] = "print 'Python 2'\n"
    target = tmp_path / "target"
    deploying.deploy(stack.publish(tmp_path / "out"), target, compile_bytecode=False)
    layer = target / "framework-fw"
    command = [str(target / "rt/bin/python3.11"), "-I", str(layer / "postinstall.py")]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "postinstall: warning: cannot compile lib/site/legacy.py: "
        "SyntaxError: Missing parentheses in call to 'print'. Did you mean print(...)? (line 1)"
    ]
    assert pyc_flags(layer / "lib/site/__pycache__" / FW_PYC) == 0b11
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and again.stderr.count("warning") == 1
    skipped = subprocess.run([*command, "--no-compile"], capture_output=True, text=True)
    assert skipped.returncode == 0 and skipped.stderr == ""


def test_compiling_while_unpacking_compiles_each_source_once(
    stack: FakeStack, tmp_path: Path
) -> None:
    fw = stack.layers["framework-fw"]["files"]
    for i in range(3 * venvlayers.bytecode.BATCH):  # several batches, some sent early
        fw[f"lib/site/pkg/m{i:03}.py"] = f"VALUE = {i}\n"
    result = deploying.deploy(stack.publish(tmp_path / "out"), tmp_path / "target")
    layers = {x.install_target: x for x in result.layers}
    assert layers["framework-fw"].compiled == 1 + 3 * venvlayers.bytecode.BATCH
    pycs = list((tmp_path / "target/framework-fw/lib/site/pkg/__pycache__").iterdir())
    assert len(pycs) == 3 * venvlayers.bytecode.BATCH
    assert not deploying.status(tmp_path / "target", verify=True).damaged


def test_an_archive_that_ships_bytecode_it_denies_is_deployed_consistently_or_refused(
    stack: FakeStack, tmp_path: Path
) -> None:
    """Its metadata says no bytecode, so its sources are compiled while it unpacks; its
    own .pyc for `Upper.py` comes after that source (uppercase sorts first) and may meet
    the compiled one. Either way nothing inconsistent is deployed."""
    fw = stack.layers["framework-fw"]["files"]
    fw["lib/site/Upper.py"] = "U = 1\n"
    fw[f"lib/site/__pycache__/Upper.{sys.implementation.cache_tag}.pyc"] = "not bytecode"
    published = stack.publish(tmp_path / "out")
    target = tmp_path / "target"
    try:
        deploying.deploy(published, target)
    except (ArchiveError, DeployError) as exc:
        assert "File exists" in str(exc) or "exists" in str(exc), exc
        assert not (target / "framework-fw").exists()
        assert leftovers(target) == []
    else:
        assert not deploying.status(target, verify=True).damaged
        pyc = target / f"framework-fw/lib/site/__pycache__/Upper.{sys.implementation.cache_tag}.pyc"
        assert pyc_flags(pyc) == 0b11  # the compiled one, which the manifest records


def test_an_archive_shipping_its_largest_modules_bytecode(stack: FakeStack, tmp_path: Path) -> None:
    """The default publish: .pyc files for the sources of `min_source_bytes` or more are in
    the archive and kept; the others are compiled by the deploy (while unpacking)."""
    big = "VALUE = 1\n" + "# padding\n" * 5000
    source = tmp_path / "big.py"
    source.write_text(big)
    shipped = tmp_path / "big.pyc"
    py_compile.compile(
        str(source),
        str(shipped),
        dfile="lib/site/big.py",
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    tag = sys.implementation.cache_tag
    fw = stack.layers["framework-fw"]["files"]
    fw["lib/site/big.py"] = big
    fw["lib/site/small.py"] = "SMALL = 1\n"
    fw[f"lib/site/__pycache__/big.{tag}.pyc"] = shipped.read_bytes()
    stack.bytecode["framework-fw"] = {"min_source_bytes": len(big)}
    target = tmp_path / "target"
    result = deploying.deploy(stack.publish(tmp_path / "out"), target)
    layer = next(x for x in result.layers if x.install_target == "framework-fw")
    assert layer.compiled == 2  # fw.py and small.py; big.py came compiled
    cache = target / "framework-fw/lib/site/__pycache__"
    assert (cache / f"big.{tag}.pyc").read_bytes() == shipped.read_bytes()
    assert pyc_flags(cache / f"small.{tag}.pyc") == 0b11
    assert not deploying.status(target, verify=True).damaged


def test_cli_deploy_no_compile(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    code = main(["-q", "deploy", str(published), "--target", str(target), "--no-compile"])
    assert code == 0
    assert not list(target.glob("*/lib/site/__pycache__/*.pyc"))
    state = json.loads((target / ".venvlayers/state.json").read_text())
    assert {layer["bytecode"] for layer in state["layers"].values()} == {False}


# -- bad input: nothing changes ------------------------------------------------------------


def test_a_tampered_archive_is_refused_before_anything_changes(
    stack: FakeStack, published: Path, deployed: Path
) -> None:
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.publish(published)
    archive = published / "app-hello.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    before = snapshot(deployed)
    with pytest.raises(ArchiveError, match=r"app-hello\.tar\.gz has the wrong sha256"):
        deploying.deploy(published, deployed)
    assert snapshot(deployed) == before
    assert run_hello(deployed).stdout.split() == ["v1"]


def test_a_truncated_archive_is_refused(published: Path, tmp_path: Path) -> None:
    archive = published / "rt.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(ArchiveError, match="has the wrong size"):
        deploying.deploy(published, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_a_missing_archive_is_refused(published: Path, tmp_path: Path) -> None:
    (published / "framework-fw.tar.gz").unlink()
    with pytest.raises(DeployError, match=r"framework-fw: its archive .* is missing"):
        deploying.deploy(published, tmp_path / "t")


REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (tar_member("app-hello/../evil.txt", data=b"x"), "'..' in member name"),
        (tar_member("/etc/evil", data=b"x"), "absolute path"),
        (tar_member("app-hello/link", SYM, linkname="../../../etc"), "link"),
        (tar_member("app-hello/lib/link", SYM, linkname="../../rt"), "points outside the tree"),
        (tar_member("app-hello/hard", LNK, linkname="/etc/passwd"), "data filter"),
        (tar_member("app-hello/dev", tarfile.CHRTYPE), "a device file or fifo"),
        (tar_member("other/x.py", data=b"x"), "a second top folder"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_changes(
    stack: FakeStack,
    published: Path,
    deployed: Path,
    tmp_path: Path,
    member: tuple[tarfile.TarInfo, bytes],
    reason: str,
) -> None:
    good = [
        tar_member("app-hello", DIR),
        tar_member("app-hello/lib", DIR),
        tar_member("app-hello/lib/a.py", data=b"a = 1\n"),
    ]
    replace_archive(published, "app-hello", write_tar(tmp_path / "bad.tar.gz", [*good, member]))
    before = snapshot(deployed)
    with pytest.raises(ArchiveError, match="refusing to extract unsafe archive") as caught:
        deploying.deploy(published, deployed)
    assert reason in str(caught.value)
    assert snapshot(deployed) == before
    assert leftovers(deployed) == []
    assert run_hello(deployed).stdout.split() == ["v1"]


def test_an_archive_for_another_folder_is_refused(published: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib/x.py").write_text("")
    archive = write_archive(
        src, tmp_path / "x.tar.gz", root_name="app-evil", fmt=ArchiveFormat.TAR_GZ, clamp_mtime=0
    )
    replace_archive(published, "app-hello", archive.path)
    with pytest.raises(ArchiveError, match="top folder is 'app-evil', expected 'app-hello'"):
        deploying.deploy(published, tmp_path / "t")


def test_disk_full_during_extraction_changes_nothing(
    stack: FakeStack, published: Path, deployed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.layers["framework-fw"]["files"]["lib/site/fw.py"] = "X = 2\n"
    stack.publish(published)
    real = _archive_extract._Tree.add_file
    calls = []

    def add_file(self: Any, name: str, *args: Any) -> None:
        calls.append(name)
        if name.startswith("app-hello/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, name, *args)

    monkeypatch.setattr(_archive_extract._Tree, "add_file", add_file)
    before = snapshot(deployed)
    with pytest.raises(ArchiveError, match=r"disk full while extracting app-hello\.tar\.gz"):
        deploying.deploy(published, deployed)
    assert snapshot(deployed) == before
    assert leftovers(deployed) == []
    monkeypatch.undo()
    result = deploying.deploy(published, deployed)
    assert {x.install_target for x in result.changed} == {"app-hello", "framework-fw"}


def test_disk_full_while_recording_changes_nothing(
    stack: FakeStack, published: Path, deployed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.publish(published)

    def full(*_args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_deploy_state, "write_atomic", full)
    before = snapshot(deployed)
    with pytest.raises(DeployError, match="cannot record the installed files: disk full"):
        deploying.deploy(published, deployed)
    assert snapshot(deployed) == before


def test_a_failing_postinstall_changes_nothing(
    stack: FakeStack, published: Path, deployed: Path
) -> None:
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.publish(published)
    before = snapshot(deployed)
    fresh = FakeStack(stack.root.parent / "broken")
    fresh.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    original = fresh.tree

    def broken_tree(layer: dict[str, Any], dest: Path) -> Path:
        result = original(layer, dest)
        if layer["layer_name"] == "app-hello":
            (dest / "postinstall.py").write_text("import sys; sys.exit('postinstall: broken')\n")
        return result

    fresh.tree = broken_tree  # type: ignore[method-assign]
    fresh.publish(published)
    with pytest.raises(DeployError, match="postinstall of app-hello: postinstall: broken"):
        deploying.deploy(published, deployed)
    assert snapshot(deployed) == before
    assert leftovers(deployed) == []


# -- extraction in worker processes --------------------------------------------------------


@pytest.fixture
def with_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Extract even the fake stack's tiny archives in worker processes."""
    monkeypatch.setattr(_deploy_extract, "PROCESS_THRESHOLD", 0)


@pytest.mark.usefixtures("with_workers")
def test_deploying_with_worker_processes(published: Path, tmp_path: Path) -> None:
    progress = RecordingReporter()
    target = tmp_path / "t"
    deploying.deploy(published, target, reporter=progress)
    assert sorted(k for k in progress.begun if k.startswith("deploy:")) == [
        "deploy:app-hello",
        "deploy:app-other@1",
        "deploy:framework-fw",
        "deploy:rt",
    ]
    # named by layer, in this process and in workers alike
    assert progress.descriptions["deploy:rt"] == "extract rt"
    assert progress.descriptions["deploy:app-other@1"] == "extract app-other@1"
    assert run_hello(target).stdout.split() == ["v1"]
    assert not deploying.status(target, verify=True).damaged


@pytest.mark.usefixtures("with_workers")
def test_a_worker_reports_an_unsafe_archive(
    published: Path, deployed: Path, tmp_path: Path
) -> None:
    members = [tar_member("app-hello", DIR), tar_member("app-hello/../x", data=b"x")]
    replace_archive(published, "app-hello", write_tar(tmp_path / "bad.tar.gz", members))
    before = snapshot(deployed)
    with pytest.raises(ArchiveError, match=r"unsafe archive .*'\.\.' in member"):
        deploying.deploy(published, deployed, force=True)
    assert snapshot(deployed) == before


WORKER_PARENT = """
import os, sys, time
from pathlib import Path
from venvlayers.deploying import extract as _deploy_extract
_deploy_extract.PROCESS_THRESHOLD = 0
archive, staging = Path(sys.argv[1]), Path(sys.argv[2])
worker = _deploy_extract._ready_worker()
assert worker is not None
print(worker.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_workers_die_with_their_deploy(published: Path, tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKER_PARENT, str(published / "rt.tar.gz"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    time.sleep(0.5)  # let it reach prctl()
    parent.kill()
    parent.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(worker, os.WNOHANG)
        time.sleep(0.05)
    else:
        os.kill(worker, 9)
        raise AssertionError("the worker outlived its deploy")


# -- the commit phase: interruptions and recovery -----------------------------------------


def test_replace_dir_swaps_atomically_or_falls_back(tmp_path: Path) -> None:
    for use_exchange in (True, False):
        final, new = tmp_path / f"final{use_exchange}", tmp_path / f"new{use_exchange}"
        final.mkdir()
        (final / "old").write_text("")
        new.mkdir()
        (new / "new").write_text("")
        aside = tmp_path / f"aside{use_exchange}"
        _deploy_state.replace_dir(new, final, aside, use_exchange=use_exchange)
        assert [p.name for p in final.iterdir()] == ["new"]
        assert [p.name for p in aside.iterdir()] == ["old"]
        assert not new.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux only")
def test_renameat2_is_available_here(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.write_text("b")
    assert _deploy_state.exchange(a, b)
    assert a.read_text() == "b" and b.is_dir()


def test_without_renameat2_the_fallback_is_used(
    published: Path, deployed: Path, stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(venvlayers._util.fs, "_renameat2", lambda: None)
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.publish(published)
    deploying.deploy(published, deployed)
    assert run_hello(deployed).stdout.split() == ["v2"]


class Killed(BaseException):
    """Stands in for SIGKILL in-process: nothing after it runs (no cleanup is attempted)."""


@pytest.mark.parametrize("kill_at", range(6))
@pytest.mark.parametrize("use_exchange", [True, False])
def test_an_interrupted_commit_is_finished_by_the_next_deploy(
    stack: FakeStack,
    published: Path,
    deployed: Path,
    monkeypatch: pytest.MonkeyPatch,
    kill_at: int,
    use_exchange: bool,
) -> None:
    """Die at each rename of the commit phase (after an exchange, between the fallback's
    two renames, while removing), then check that everything runs and the next deploy
    finishes the job."""
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.layers["framework-fw"]["files"]["lib/site/fw.py"] = "X = 2\n"
    stack.layers["app-other"]["install_target"] = "app-other@2"
    stack.publish(published)
    if not use_exchange:
        monkeypatch.setattr(venvlayers._util.fs, "_renameat2", lambda: None)
    real_rename = os.rename
    renames: list[str] = []

    def rename(src: Any, dst: Any) -> None:
        if len(renames) == kill_at:
            raise Killed
        renames.append(str(src))
        real_rename(src, dst)

    real_apply = deploying.operations.apply_transaction

    def apply_transaction(*args: Any) -> Any:
        with monkeypatch.context() as m:
            m.setattr(os, "rename", rename)
            return real_apply(*args)

    monkeypatch.setattr(deploying.operations, "apply_transaction", apply_transaction)
    try:
        deploying.deploy(published, deployed)
        killed = False
    except Killed:
        killed = True
    monkeypatch.undo()
    # fw, app-hello: exchange + rename (or two renames); app-other@2: rename; removal: rename
    assert killed == (kill_at < (4 if use_exchange else 6))
    if killed:
        state = json.loads((deployed / ".venvlayers/state.json").read_text())
        assert "transaction" in state
        assert deploying.status(deployed).unfinished
    if not use_exchange and kill_at in (1, 3):
        # the fallback's window: between its two renames a layer is missing
        with pytest.raises(DeployError, match="cannot run"):
            run_hello(deployed)
    else:
        # every layer directory is complete: the old or the new version of each app runs
        assert run_hello(deployed).stdout.split()[0] in ("v1", "v2")
    result = deploying.deploy(published, deployed)
    assert {x.action for x in result.layers} == {"unchanged"}
    assert run_hello(deployed).stdout.split() == ["v2"]
    assert run_hello(deployed, app="other").returncode == 0
    assert not (deployed / "app-other@1").exists()
    assert leftovers(deployed) == []
    assert not deploying.status(deployed, verify=True).damaged


# -- lock ----------------------------------------------------------------------------------


def test_a_second_deploy_waits_for_the_lock(published: Path, deployed: Path) -> None:
    notes: list[str] = []
    with _deploy_state.target_lock(deployed, timeout=None, waiting=notes.append):
        with pytest.raises(DeployError, match=r"another venvlayers process \(pid \d+\)"):
            deploying.deploy(published, deployed, lock_timeout=0)
        with pytest.raises(DeployError, match="another venvlayers process"):
            deploying.deploy(published, deployed, lock_timeout=0.3)
    deploying.deploy(published, deployed, lock_timeout=0)


# -- over HTTP -----------------------------------------------------------------------------


def test_deploy_over_http(stack: FakeStack, http_root: tuple[str, Path], tmp_path: Path) -> None:
    url, root = http_root
    stack.publish(root / "stack")
    target = tmp_path / "t"
    result = deploying.deploy(f"{url}/stack/", target)
    assert len(result.changed) == 4
    assert run_hello(target).stdout.split() == ["v1"]
    assert leftovers(target) == []


def test_http_errors_are_one_line_and_change_nothing(
    stack: FakeStack, http_root: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = http_root
    out = stack.publish(root / "stack")
    target = tmp_path / "t"
    with pytest.raises(
        DeployError, match=r"cannot read .*/nothing/__venvstacks__/venvstacks.json: HTTP 404"
    ):
        deploying.deploy(f"{url}/nothing", target)
    assert not target.exists()
    deploying.deploy(out, target)
    before = snapshot(target)
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    stack.publish(out)
    (out / "app-hello.tar.gz").unlink()
    with pytest.raises(
        DeployError, match=r"cannot download .*/app-hello.tar.gz: HTTP 404"
    ) as caught:
        deploying.deploy(f"{url}/stack", target)
    assert "\n" not in str(caught.value)
    assert snapshot(target) == before
    assert leftovers(target) == []


def test_an_unreachable_server_is_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        DeployError, match=f"cannot read http://127.0.0.1:{port}/.*: [Cc]onnection refused"
    ):
        deploying.deploy(f"http://127.0.0.1:{port}/stack", tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_a_download_that_does_not_match_is_refused(
    stack: FakeStack, http_root: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = http_root
    out = stack.publish(root / "stack")
    archive = out / "app-hello.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-1] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(DeployError, match="does not match its sha256"):
        deploying.deploy(f"{url}/stack", tmp_path / "t")
    assert leftovers(tmp_path / "t") == []
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [".venvlayers"]


# -- status and remove ---------------------------------------------------------------------


def test_status_reports_layers_and_apps(deployed: Path) -> None:
    result = deploying.status(deployed)
    assert not result.damaged and not result.unfinished
    assert [x.record.install_target for x in result.layers] == [
        "app-hello",
        "app-other@1",
        "framework-fw",
        "rt",
    ]
    apps = {a.name: a for a in result.apps}
    assert apps["hello"].runnable and apps["other"].install_target == "app-other@1"


def test_verify_finds_changed_missing_and_extra_files(deployed: Path) -> None:
    assert not deploying.status(deployed, verify=True).damaged
    run_hello(deployed)  # may write bytecode: not damage
    cache = deployed / "framework-fw/lib/site/__pycache__"
    (cache / "later.cpython-311.pyc").write_bytes(b"for a module the deploy did not compile")
    assert not deploying.status(deployed, verify=True).damaged
    (cache / FW_PYC).write_bytes(b"the deploy compiled this one: it is checked")
    (deployed / "framework-fw/lib/site/fw.py").write_text("X = 6\n")
    (deployed / "app-hello/share/venv/metadata/venvstacks_layer.json").unlink()
    (deployed / "app-hello/lib/site/extra.py").write_text("")
    result = deploying.status(deployed, verify=True)
    problems = {str(x.record.install_target): x.problems for x in result.layers}
    changed_pyc, changed_py = problems["framework-fw"]
    assert changed_pyc.startswith(f"file changed: lib/site/__pycache__/{FW_PYC} has 43 bytes")
    assert changed_py == "file changed: lib/site/fw.py has different content"
    assert problems["app-hello"] == (
        "missing file: share/venv/metadata/venvstacks_layer.json",
        "unexpected file: lib/site/extra.py",
    )
    assert problems["rt"] == ()
    apps = {a.name: a for a in result.apps}
    assert apps["hello"].damaged == ("app-hello", "framework-fw")
    assert apps["other"].runnable


def test_status_of_a_missing_layer(deployed: Path) -> None:
    venvlayers._util.fs.remove_tree(deployed / "rt")
    result = deploying.status(deployed)
    assert result.damaged
    assert {a.name: a.missing for a in result.apps} == {"hello": ("rt",), "other": ("rt",)}


def test_status_without_a_deployment(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="has no venvlayers deployment"):
        deploying.status(tmp_path)


def test_remove_collects_what_nothing_needs(deployed: Path) -> None:
    result = deploying.remove(deployed, "hello")
    assert set(result.removed) == {"app-hello", "framework-fw"}
    assert sorted(p.name for p in deployed.iterdir()) == [".venvlayers", "app-other@1", "rt"]
    assert not deploying.status(deployed, verify=True).damaged
    with pytest.raises(
        DeployError, match=r"nothing named 'hello' is deployed .*\(deployed: app-other\)"
    ):
        deploying.remove(deployed, "hello")
    with pytest.raises(DeployError, match="only deployed because other layers need it"):
        deploying.remove(deployed, "rt")
    assert deploying.remove(deployed, "app-other@1").removed == ("app-other@1", "rt")
    assert sorted(p.name for p in deployed.iterdir()) == [".venvlayers"]
    assert len(list((deployed / ".venvlayers/manifests").iterdir())) == 0


def test_remove_without_a_deployment(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="has no venvlayers deployment"):
        deploying.remove(tmp_path, "x")


# -- run -----------------------------------------------------------------------------------


def test_run_passes_arguments_exit_code_and_stdin(deployed: Path) -> None:
    command = deploying.app_command("hello", location=deployed, args=["--stdin", "--exit", "7"])
    assert command.kind == "deployment"
    assert command.argv[1:4] == ("-P", "-m", "hello")  # -P: cwd cannot shadow the app
    proc = subprocess.run(
        command.argv, env=dict(command.env), input="piped", capture_output=True, text=True
    )
    assert proc.returncode == 7
    assert proc.stdout.split() == ["v1", "--stdin", "--exit", "7", "PIPED"]
    assert deploying.run_app("hello", location=deployed, args=["--exit", "3"]) == 3


def test_run_does_not_leak_our_environment(deployed: Path) -> None:
    env = deploying.app_environment(
        {"PYTHONPATH": "/ours", "VIRTUAL_ENV": "/venv", "KEEP": "1", "PATH": os.defpath}
    )
    assert env == {"KEEP": "1", "PATH": os.defpath}
    ours = os.path.join(sys.prefix, "bin")
    if sys.prefix != sys.base_prefix:
        env = deploying.app_environment({"PATH": f"{ours}{os.pathsep}/usr/bin"})
        assert env["PATH"] == "/usr/bin"


def test_run_finds_apps_in_exports_and_plain_directories(deployed: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("rt", "framework-fw", "app-hello", "app-other@1"):
        (deployed / name).rename(plain / name)
    assert run_hello(plain).stdout.split() == ["v1"]
    assert run_hello(plain, app="app-other").stdout == "other\n"
    # a newer version beside the older one: the newer wins
    shutil.copytree(plain / "app-other@1", plain / "app-other@2", symlinks=True)
    (plain / "app-other@2/lib/site/other.py").write_text("print('other 2')\n")
    assert run_hello(plain, app="other").stdout == "other 2\n"
    # a build directory: build names, with deployed-name aliases
    (plain / "app-other@2").rename(plain / "app-other")
    (plain / "app-other@2").symlink_to("app-other")
    venvlayers._util.fs.remove_tree(plain / "app-other@1")
    assert deploying.app_command("other", location=plain).layer_dir.name == "app-other"
    meta = plain / "__venvstacks__"
    meta.mkdir()
    (meta / "venvstacks.json").write_text(
        json.dumps(
            {
                "layers": {
                    "applications": [
                        {
                            "layer_name": "app-hello",
                            "install_target": "app-hello",
                            "app_launch_module": "hello",
                        }
                    ]
                }
            }
        )
    )
    command = deploying.app_command("hello", location=plain)
    assert command.kind == "export"
    with pytest.raises(DeployError, match=r"no app 'other' in .*venvstacks.json \(apps: hello\)"):
        deploying.app_command("other", location=plain)


def test_run_errors(deployed: Path, published: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DeployError, match=r"no app 'nope' is deployed in .* \(apps: hello, other\)"
    ):
        deploying.app_command("nope", location=deployed)
    with pytest.raises(DeployError, match="is a published stack, not a deployment"):
        deploying.app_command("hello", location=published)
    with pytest.raises(DeployError, match="holds no application layers"):
        deploying.app_command("hello", location=tmp_path / "stack")
    venvlayers._util.fs.remove_tree(deployed / "framework-fw")
    with pytest.raises(
        DeployError, match=r"app-hello cannot run: layers it needs are missing \(framework-fw\)"
    ):
        deploying.app_command("hello", location=deployed)
    (deployed / "app-other@1/bin/python").unlink()  # as if postinstall had not run
    with pytest.raises(DeployError, match="bin/python is missing"):
        deploying.app_command("other", location=deployed)
    venvlayers._util.fs.remove_tree(deployed / "rt")
    with pytest.raises(DeployError, match=r"cannot run: layers it needs are missing \(rt\)"):
        deploying.app_command("other", location=deployed)


# -- CLI -----------------------------------------------------------------------------------


def test_cli_deploy_status_run_remove(
    published: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t"
    assert main(["deploy", str(published), "--target", str(target), "--json"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert [x["action"] for x in out["layers"]] == ["installed"] * 4
    assert main(["status", "--target", str(target), "--verify", "--json"]) == 0
    status = json.loads(capfd.readouterr().out)
    assert status["damaged"] is False and all(a["runnable"] for a in status["apps"])
    assert main(["status", "-t", str(target)]) == 0
    assert "app hello (app-hello): runnable" in capfd.readouterr().out
    assert main(["run", "hello", "--target", str(target), "--", "--exit", "5", "-v"]) == 5
    assert capfd.readouterr().out.split() == ["v1", "--exit", "5", "-v"]
    (target / "rt/postinstall.py").write_text("changed")
    assert main(["status", "-t", str(target), "--verify"]) == 1
    assert "error: damaged or missing layers: rt" in capfd.readouterr().err
    assert main(["remove", "--target", str(target), "other", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["removed"] == ["app-other@1"]


def test_cli_errors_are_one_line(
    published: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = published / "rt.tar.gz"
    archive.write_bytes(archive.read_bytes() + b"x")
    assert main(["deploy", str(published), "--target", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: archive ") and "has the wrong size" in err
    assert err.count("\n") == 1
    assert main(["run", "nope", "--target", str(tmp_path)]) == 1
    assert main(["deploy", str(published)]) == 2  # --target is required
