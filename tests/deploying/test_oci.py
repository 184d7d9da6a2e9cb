"""Deploying from OCI registries and layouts, and the push / pull / run --from commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.plugins.registry import CountingProxy, Registry
from tests.support.fakestack import HELLO, FakeStack, leftovers, run_hello, snapshot
from tests.support.keys import write_key
from tests.support.reporting import RecordingReporter
from venvlayers import deploying, distribution, publishing
from venvlayers.cli import main
from venvlayers.errors import DistributionError, SignatureError, TransferError
from venvlayers.signing import SignatureProblem, load_signing_key


def _push(out: Path, ref: str) -> distribution.PushResult:
    return distribution.push(out, ref)


@pytest.fixture
def released(tmp_path: Path) -> tuple[Path, Path]:
    """Two publishes of one stack: v2 changes only the app-hello layer."""
    stack = FakeStack(tmp_path / "stack")
    v1 = stack.publish(tmp_path / "v1")
    stack.layers["app-hello"]["files"]["lib/site/hello.py"] = HELLO.format(version="v2")
    v2 = stack.publish(tmp_path / "v2")
    return v1, v2


def test_deploy_from_a_registry_fetches_only_what_changed(
    proxy: CountingProxy, released: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, v2 = released
    _push(v1, proxy.ref("team/stack", "1"))
    _push(v2, proxy.ref("team/stack", "2"))
    target = tmp_path / "target"
    proxy.clear()
    progress = RecordingReporter()
    first = deploying.deploy(proxy.ref("team/stack", "1"), target, reporter=progress)
    # progress names layers and archives, not the digest-prefixed files they are staged as
    assert progress.descriptions["deploy:app-hello"] == "extract app-hello"
    assert progress.descriptions["download:app-hello.tar.gz"] == "download app-hello.tar.gz"
    assert {x.action for x in first.layers} == {"installed"}
    assert len(proxy.blob_gets()) == len(first.layers) + 1  # + the config (venvstacks.json)
    assert "v1" in run_hello(target).stdout
    proxy.clear()
    second = deploying.deploy(proxy.ref("team/stack", "2"), target)
    assert [x.install_target for x in second.changed] == ["app-hello"]
    archive_gets = [h for h in proxy.blob_gets() if h.received > 0]
    hello = next(x for x in second.layers if x.install_target == "app-hello")
    # the config and the one changed archive: nothing else crosses the network
    config_size = len((v2 / "__venvstacks__" / "venvstacks.json").read_bytes())
    assert sorted(h.received for h in archive_gets) == sorted([config_size, hello.archive_size])
    # what the deploy says it fetched is what crossed the network: archives only
    assert first.fetched == sum(x.archive_size for x in first.layers)
    assert second.fetched == hello.archive_size
    assert "v2" in run_hello(target).stdout
    assert leftovers(target) == []
    assert deploying.deploy(v2, tmp_path / "from-dir").fetched == 0


def test_deploy_by_digest_and_from_an_oci_layout(
    registry: Registry, released: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, _ = released
    pushed = _push(v1, f"oci://{registry.host}/team/digest:1")
    by_digest = f"oci://{registry.host}/team/digest@{pushed.digest}"
    deploying.deploy(by_digest, tmp_path / "a")
    assert "v1" in run_hello(tmp_path / "a").stdout
    layout = tmp_path / "layout"
    distribution.push(v1, f"oci-layout:{layout}")
    deploying.deploy(f"oci-layout:{layout}", tmp_path / "b")
    assert "v1" in run_hello(tmp_path / "b").stdout


def test_a_byte_flipped_in_a_stored_blob_is_refused_with_nothing_written(
    registry: Registry, released: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, v2 = released
    ref = f"oci://{registry.host}/team/flip:1"
    _push(v1, ref)
    target = tmp_path / "target"
    deploying.deploy(ref, target)
    before = snapshot(target)
    pushed = _push(v2, f"oci://{registry.host}/team/flip:2")
    changed = next(b for b in pushed.blobs if b.name.startswith("app-hello"))
    blob = registry.blob_file(changed.digest)
    original = blob.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    try:  # the registry stores a blob once for every repository: put it back after
        with pytest.raises(TransferError):
            deploying.deploy(f"oci://{registry.host}/team/flip:2", target)
    finally:
        blob.write_bytes(original)
    assert snapshot(target) == before
    assert "v1" in run_hello(target).stdout


def test_a_signature_travels_through_the_registry(
    registry: Registry, released: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, v2 = released
    key = load_signing_key(write_key(tmp_path, "k", ed25519.Ed25519PrivateKey.generate()))
    trusted = tmp_path / "allowed_signers"
    trusted.write_text(key.allowed_signers_line("ops@example.com") + "\n")
    publishing.sign_stack(v1, key)
    _push(v1, f"oci://{registry.host}/team/signed:1")
    target = tmp_path / "target"
    result = deploying.deploy(f"oci://{registry.host}/team/signed:1", target, trusted_keys=trusted)
    assert result.signed_by is not None and result.signed_by.principals == ("ops@example.com",)
    # a mirror pulled from the registry carries the signature too
    mirror = tmp_path / "mirror"
    distribution.pull(f"oci://{registry.host}/team/signed:1", mirror)
    again = deploying.deploy(mirror, tmp_path / "from-mirror", trusted_keys=trusted)
    assert again.signed_by == result.signed_by
    _push(v2, f"oci://{registry.host}/team/signed:2")  # unsigned
    before = snapshot(target)
    with pytest.raises(SignatureError) as info:
        deploying.deploy(f"oci://{registry.host}/team/signed:2", target)
    assert info.value.problem == SignatureProblem.UNSIGNED
    assert snapshot(target) == before


def test_an_unknown_tag_is_one_line(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises((DistributionError, TransferError)) as info:
        deploying.deploy(f"oci://{registry.host}/team/nothing:1", tmp_path / "t")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "t").exists()


_DEPLOY_AND_DIE = """
import sys
from pathlib import Path
from venvlayers import deploying
deploying.deploy(sys.argv[1], Path(sys.argv[2]))
"""


def test_a_deploy_killed_mid_download_is_resumed(proxy: CountingProxy, tmp_path: Path) -> None:
    stack = FakeStack(tmp_path / "stack")
    stack.layers["framework-fw"]["files"]["lib/site/big.bin"] = os.urandom(3 << 20).hex()
    out = stack.publish(tmp_path / "out")
    ref = proxy.ref("team/killed", "1")
    _push(out, ref)
    target = tmp_path / "target"
    proxy.slow_blobs = 0.02  # 16 KiB pieces: the download takes seconds
    proxy.started.clear()
    proc = subprocess.Popen([sys.executable, "-c", _DEPLOY_AND_DIE, ref, str(target)])
    try:
        assert proxy.started.wait(30)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (target / "framework-fw").exists()
    partials = list((target / ".venvlayers").rglob("*.partial"))
    assert partials and all(p.stat().st_size > 0 for p in partials)
    proxy.slow_blobs = 0
    proxy.clear()
    deploying.deploy(ref, target)
    assert "v1" in run_hello(target).stdout
    ranged = [
        h for h in proxy.hits if h.method == "GET" and "range" in {k.lower() for k in h.headers}
    ]
    assert ranged, "the interrupted blob was fetched again from the start"
    assert leftovers(target) == [] and not (target / ".venvlayers" / "downloads").exists()


def test_cli_push_pull_deploy_and_run_from(
    registry: Registry,
    released: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1, v2 = released
    ref = f"oci://{registry.host}/team/cli:1"
    assert main(["push", str(v1), ref, "--json"]) == 0
    pushed = json.loads(capsys.readouterr().out)
    assert pushed["digest"].startswith("sha256:") and not pushed["unchanged"]
    assert main(["push", str(v1), ref]) == 0
    assert "nothing sent" in capsys.readouterr().out
    # moving the tag to other content needs --force
    assert main(["push", str(v2), ref]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert main(["push", str(v2), ref, "--force"]) == 0
    capsys.readouterr()
    mirror = tmp_path / "mirror"
    assert main(["pull", ref, str(mirror)]) == 0
    capsys.readouterr()
    assert main(["deploy", str(mirror), "--target", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert "v2" in run_hello(tmp_path / "t").stdout
    monkeypatch.setenv("VENVLAYERS_DATA_DIR", str(tmp_path / "data"))
    assert main(["run", "hello", "--from", ref]) == 0
    runs = list((tmp_path / "data" / "run").iterdir())
    assert len(runs) == 1 and deploying.default_run_target(ref) == runs[0]
    assert "v2" in run_hello(runs[0]).stdout


def test_run_from_runs_the_deployed_copy_when_the_source_is_gone(
    proxy: CountingProxy, released: tuple[Path, Path], tmp_path: Path
) -> None:
    v1, _ = released
    ref = proxy.ref("team/offline", "1")
    _push(v1, ref)
    target = tmp_path / "target"
    first = RecordingReporter()
    assert deploying.run_from(ref, "hello", target=target, reporter=first) == 0
    [note] = first.notes  # one line for the deploy, then only the app speaks
    n = len(deploying.status(target).layers)
    assert note.startswith(f"deployed {n} of {n} layers for hello into {target} (")
    assert note.endswith(" fetched)")
    again = RecordingReporter()
    assert deploying.run_from(ref, "hello", target=target, reporter=again) == 0
    assert again.notes == []  # nothing changed, nothing said
    proxy.fail = lambda method, path: 503
    reporter = RecordingReporter()
    assert deploying.run_from(ref, "hello", target=target, reporter=reporter) == 0
    assert any("running what is deployed" in n for n in reporter.notes)
    # a machine that never ran it has nothing to fall back on, and is told so
    with pytest.raises(TransferError, match="hello was never deployed from it here"):
        deploying.run_from(ref, "hello", target=tmp_path / "fresh")


def test_cli_run_from_stops_the_progress_display_before_the_app_starts(
    registry: Registry,
    released: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, a progress display still drawing would overwrite the app's output."""
    from venvlayers.cli import common

    v1, _ = released
    ref = f"oci://{registry.host}/team/progress:1"
    _push(v1, ref)
    monkeypatch.setenv("VENVLAYERS_DATA_DIR", str(tmp_path / "data"))
    events: list[str] = []
    original_exit = common.RichReporter.__exit__

    def exit_(self: common.RichReporter, *exc: object) -> None:
        events.append("progress stopped")
        original_exit(self, *exc)

    def run_app(app: str, *, location: Path | None = None, args: tuple[str, ...] = ()) -> int:
        events.append(f"run {app}")
        assert location is not None and "v1" in run_hello(location).stdout
        return 3

    monkeypatch.setattr(common.RichReporter, "__exit__", exit_)
    monkeypatch.setattr(deploying, "run_app", run_app)
    assert main(["run", "hello", "--from", ref]) == 3
    assert events == ["progress stopped", "run hello"]


def test_cli_summaries_say_what_was_moved(
    registry: Registry,
    released: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    v1, v2 = released
    ref = f"oci://{registry.host}/team/summary"
    assert main(["push", str(v1), f"{ref}:1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"pushed {ref}:1@sha256:") and " uploaded in " in last
    assert main(["push", str(v2), f"{ref}:2", "--json"]) == 0
    pushed = json.loads(capsys.readouterr().out)
    assert pushed["seconds"] >= 0 and pushed["bytes_sent"] > 0
    target = tmp_path / "target"
    assert main(["deploy", f"{ref}:1", "--target", str(target)]) == 0
    assert " fetched)" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["deploy", f"{ref}:2", "--target", str(target), "--json"]) == 0
    deployed = json.loads(capsys.readouterr().out)
    hello = next(x for x in deployed["layers"] if x["install_target"] == "app-hello")
    assert deployed["fetched_bytes"] == hello["archive_size"]
    assert main(["deploy", str(v2), "--target", str(target)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("s)")  # nothing fetched
    mirror = tmp_path / "mirror"
    assert main(["pull", f"{ref}:2", str(mirror), "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert not pulled["unchanged"] and pulled["seconds"] >= 0
    assert main(["pull", f"{ref}:1", str(mirror)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"pulled {ref}:1@") and " downloaded in " in last


def test_push_takes_the_chunk_size_as_people_write_it(
    proxy: CountingProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = FakeStack(tmp_path / "stack")
    stack.layers["app-hello"]["files"]["lib/site/bulk.bin"] = os.urandom(200_000).hex()
    out = stack.publish(tmp_path / "out")
    proxy.max_body = 64 * 1024
    assert main(["push", str(out), proxy.ref("team/chunks", "1"), "--max-chunk", "64KiB"]) == 0
    capsys.readouterr()
    patches = [h for h in proxy.hits if h.method == "PATCH"]
    assert len(patches) > 1 and all(h.sent <= 64 * 1024 for h in patches)
    for bad in ("lots", "0", "8 parsecs"):
        assert main(["push", str(out), proxy.ref("team/chunks", "2"), "--max-chunk", bad]) == 2
        assert "is not a size" in capsys.readouterr().err
