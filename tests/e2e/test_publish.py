"""Publishing and local export: reproducible archives, metadata, skipping (issue 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest
import zstandard

from tests.e2e.conftest import Built, run_app_json, scrubbed_env
from venvlayers import PublishError
from venvlayers.archives import ArchiveFormat
from venvlayers.bytecode import compile_layer, layer_sources
from venvlayers.errors import VenvLayersError
from venvlayers.publishing import ExportOptions, PublishOptions, export_stack, publish_stack
from venvlayers.publishing.metadata import schema


def publish(built: Built, out: Path, build_dir: Path | None = None, **options: object):  # type: ignore[no-untyped-def]
    opts = PublishOptions(build_dir=build_dir or built.build_dir, output_dir=out, **options)  # type: ignore[arg-type]
    return {o.build_name: o for o in publish_stack(built.stack, opts)}


def tar_members(archive: Path, extract_to: Path | None = None) -> list[str]:
    """Member names of a tar archive (zstd too), extracting with the `data` filter."""
    with archive.open("rb") as raw:
        source = (
            zstandard.ZstdDecompressor().stream_reader(raw) if archive.suffix == ".zst" else raw
        )
        with tarfile.open(fileobj=source, mode="r|*") as tf:
            names = []
            for member in tf:
                names.append(member.name)
                if extract_to is not None:
                    tf.extract(member, extract_to, filter="data")
    return names


def digests(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "__venvstacks__/venvstacks.json").read_text())
    return {
        layer["install_target"]: layer["archive_hashes"]["sha256"]
        for category in manifest["layers"].values()
        for layer in category
    }


def test_two_build_dirs_give_identical_archives_and_valid_metadata(
    layered_stack: Built, tmp_path: Path
) -> None:
    first = publish(layered_stack, tmp_path / "out1")
    other_build = tmp_path / "elsewhere" / "_build2"
    layered_stack.build(build_dir=other_build)
    for layer_dir in other_build.iterdir():  # a build dir with another history:
        sources = layer_sources(layer_dir, "lib")
        # its bytecode compiled in another order, by the fast compiler, which archives
        # must not keep (its bytes depend on what it compiled before) ...
        compile_layer(Path(sys.executable), layer_dir, sources[::-1], error=VenvLayersError)
        # ... and what other tools leave: other Pythons' bytecode, empty cache folders
        for source in sources[:3]:
            cache = (layer_dir / source).parent / "__pycache__"
            (cache / "leftover.cpython-399.pyc").write_bytes(b"junk")
        (layer_dir / "share" / "__pycache__").mkdir(parents=True, exist_ok=True)
    publish(layered_stack, tmp_path / "out2", build_dir=other_build)
    assert digests(tmp_path / "out1") == digests(tmp_path / "out2")
    assert len(first) == 6
    manifest = json.loads((tmp_path / "out1/__venvstacks__/venvstacks.json").read_text())
    jsonschema.validate(manifest, schema("venvstacks"))
    for path in (tmp_path / "out1/__venvstacks__/env_metadata").glob("*.json"):
        jsonschema.validate(json.loads(path.read_text()), schema("env_metadata"))
    for layer in ("app-one", "framework-base"):
        config = layered_stack.build_dir / layer / "share/venv/metadata/venvstacks_layer.json"
        jsonschema.validate(json.loads(config.read_text()), schema("layer_config"))


def test_archives_pass_the_data_filter_and_hold_no_outside_links(
    layered_stack: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    results = publish(layered_stack, out, bytecode_share=0)  # no bytecode shipped
    for result in results.values():
        names = tar_members(result.path, tmp_path / "x" / result.build_name)
        prefix = f"{result.deploy_name}/"
        assert all(n == result.deploy_name or n.startswith(prefix) for n in names)
        assert not any("__pycache__" in n for n in names)
        assert result.metadata["archive_options"]["bytecode"] is False
    app = tmp_path / "x" / "app-one" / "app-one"
    assert not (app / "bin" / "python").exists()  # made by postinstall on the target
    assert (app / "postinstall.py").exists()


def test_by_default_the_largest_modules_bytecode_is_shipped(
    layered_stack: Built, tmp_path: Path
) -> None:
    from venvlayers.bytecode import SHIPPED_SHARE, source_of_pyc

    results = publish(layered_stack, tmp_path / "out", include=("cpython-rt",))
    runtime = results["cpython-rt"]
    rule = runtime.metadata["archive_options"]["bytecode"]
    threshold = rule["min_source_bytes"]
    root = tmp_path / "x"
    names = tar_members(runtime.path, root)
    layer = root / runtime.deploy_name
    pycs = [n.split("/", 1)[1] for n in names if n.endswith(".pyc")]
    sources = [n.split("/", 1)[1] for n in names if n.endswith(".py") and "/lib/" in f"/{n}"]
    sizes = {s: (layer / s).stat().st_size for s in sources}
    expected = {s for s, size in sizes.items() if size >= threshold}
    assert {source_of_pyc(p) for p in pycs} == expected
    assert sum(sizes[s] for s in expected) <= SHIPPED_SHARE * sum(sizes.values())
    assert expected, "the runtime's largest modules ship compiled"


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_GZ, ArchiveFormat.ZIP])
def test_other_formats(layered_stack: Built, tmp_path: Path, fmt: ArchiveFormat) -> None:
    results = publish(layered_stack, tmp_path / "out", fmt=fmt, include=("app-two",))
    archive = results["app-two"].path
    assert archive.name == f"app-two@1.{fmt.value}"
    if fmt is ArchiveFormat.ZIP:
        with zipfile.ZipFile(archive) as zf:
            assert "app-two@1/postinstall.py" in zf.namelist()
    else:
        assert "app-two@1/postinstall.py" in tar_members(archive)
    again = publish(layered_stack, tmp_path / "out2", fmt=fmt, include=("app-two",))
    assert (
        again["app-two"].metadata["archive_hashes"] == results["app-two"].metadata["archive_hashes"]
    )


def test_launch_module_edit_republishes_only_that_app(layered_stack: Built, tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish(layered_stack, out, tag_outputs=True)
    before = digests(out)
    module = layered_stack.spec.parent / "one.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# edited\n")
        layered_stack.build()
        results = publish(layered_stack, out, tag_outputs=True)
        actions = {name: r.action for name, r in results.items()}
        assert actions.pop("app-one") == "published"
        assert set(actions.values()) == {"unchanged"}
        assert results["app-one"].metadata["archive_build"] == 2
        assert results["app-one"].path.name == "app-one-linux_x86_64-2.tar.zst".replace(
            "linux_x86_64", results["app-one"].metadata["target_platform"]
        )
        assert results["framework-base"].metadata["archive_build"] == 1
        after = digests(out)
        assert {k for k in after if after[k] != before.get(k)} == {"app-one"}
    finally:
        module.write_text(original)
        layered_stack.build()


def test_publish_signs_and_drops_a_stale_signature(layered_stack: Built, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tests.support.keys import write_key
    from venvlayers.layout import METADATA_PATH, SIGNATURE_PATH
    from venvlayers.signing import AllowedSigners, load_signing_key, verify

    key = load_signing_key(write_key(tmp_path, "k", ed25519.Ed25519PrivateKey.generate()))
    signers = AllowedSigners.parse(key.allowed_signers_line("ci@example.com"), "test")
    out = tmp_path / "out"
    publish(layered_stack, out, sign_key=key)
    manifest, sig = out / METADATA_PATH, out / SIGNATURE_PATH
    assert verify(manifest.read_bytes(), sig.read_bytes(), signers).principals == (
        "ci@example.com",
    )
    publish(layered_stack, out)  # unchanged metadata: the signature is still valid, kept
    assert verify(manifest.read_bytes(), sig.read_bytes(), signers)
    before = manifest.read_bytes()
    publish(layered_stack, out, fmt=ArchiveFormat.TAR_GZ)  # other archives: new metadata
    assert manifest.read_bytes() != before
    assert not sig.exists()


def test_stale_build_is_refused(layered_stack: Built, tmp_path: Path) -> None:
    module = layered_stack.spec.parent / "one.py"
    original = module.read_text()
    try:
        module.write_text(original + "X = 1\n")
        with pytest.raises(PublishError, match=r"app-one: the build .* no longer matches"):
            publish(layered_stack, tmp_path / "out")
    finally:
        module.write_text(original)


def test_dry_run_writes_nothing(layered_stack: Built, tmp_path: Path) -> None:
    results = publish(layered_stack, tmp_path / "out", dry_run=True)
    assert {r.action for r in results.values()} == {"would publish"}
    assert not (tmp_path / "out").exists()


def test_compiled_bytecode_is_reproducible(layered_stack: Built, tmp_path: Path) -> None:
    one = publish(layered_stack, tmp_path / "a", include=("app-two",), compile_bytecode=True)
    two = publish(layered_stack, tmp_path / "b", include=("app-two",), compile_bytecode=True)
    assert one["app-two"].metadata["archive_hashes"] == two["app-two"].metadata["archive_hashes"]
    assert any(n.endswith(".pyc") for n in tar_members(one["app-two"].path))


def test_interrupted_publish_leaves_nothing_that_looks_complete(
    layered_stack: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    big = layered_stack.build_dir / "app-two" / "big.bin"
    big.write_bytes(os.urandom(160 << 20))  # time to interrupt the writer
    try:
        code = (
            "import sys; from venvlayers.cli import main; "
            "sys.exit(main(['-q', 'publish', sys.argv[1], '--build-dir', sys.argv[2], "
            "'--output-dir', sys.argv[3], '--include', 'app-two', '--level', '19']))"
        )
        env = {**os.environ, "VENVLAYERS_CACHE_DIR": os.environ["VENVLAYERS_CACHE_DIR"]}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                str(layered_stack.spec),
                str(layered_stack.build_dir),
                str(out),
            ],
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("*partial*")):
            time.sleep(0.05)
        assert list(out.glob("*partial*")), "the writer never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "app-two@1.tar.zst").exists()
        assert not (out / "__venvstacks__/env_metadata/app-two.json").exists()
        # the next publish cleans up and completes
        results = publish(layered_stack, out, include=("app-two",), level=1)
        assert results["app-two"].action == "published"
        assert not list(out.glob(".*partial*")) and not list(out.glob(".*staging*"))
    finally:
        big.unlink()


def test_local_export_runs_and_skips_unchanged(layered_stack: Built, tmp_path: Path) -> None:
    out = tmp_path / "export"
    opts = ExportOptions(build_dir=layered_stack.build_dir, output_dir=out)
    results = {r.build_name: r.action for r in export_stack(layered_stack.stack, opts)}
    assert set(results.values()) == {"exported"}
    assert sorted(p.name for p in out.iterdir()) == [
        "__venvstacks__",
        "app-one",
        "app-two@1",
        "cpython-rt",
        "framework-base",
        "framework-left",
        "framework-right@1",
    ]
    assert run_app_json(out / "app-one", "one")["answer"] == 42
    moved = tmp_path / "moved"
    out.rename(moved)
    assert run_app_json(moved / "app-two@1", "two")["vl_zeta"].startswith(str(moved))
    moved.rename(out)
    again = {r.build_name: r.action for r in export_stack(layered_stack.stack, opts)}
    assert set(again.values()) == {"unchanged"}
    manifest = json.loads((out / "__venvstacks__/venvstacks.json").read_text())
    jsonschema.validate(manifest, schema("venvstacks"))
    assert "archive_name" not in manifest["layers"]["applications"][0]
    proc = subprocess.run(
        [out / "framework-left" / "bin" / "vl-hello"],
        capture_output=True,
        text=True,
        env=scrubbed_env(),
    )
    assert proc.returncode == 0, proc.stderr
