"""Fake published directories: real archives and metadata, no lock or build needed.

`FakeLayer`s become `.tar.zst` archives (written by venvlayers' own writer) of a small
tree whose content depends on the layer's `content` string, so two stacks share a blob
exactly when a layer's content is the same. `venvstacks.json` and
`env_metadata/<layer>.json` record sizes and hashes as `venvlayers publish` does.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venvlayers.archives import ArchiveFormat, write_archive
from venvlayers.platforms import build_platform

CLAMP = 1_700_000_000


@dataclass
class FakeLayer:
    category: str
    layer_name: str
    content: str
    install_target: str = ""
    required: list[str] = field(default_factory=list)
    launch: str | None = None
    bulk: int = 0
    """Bytes of incompressible data in the archive (seeded by `content`)."""
    platform: str = ""


def default_layers(tag: str = "", *, app_content: str = "app v1", bulk: int = 0) -> list[FakeLayer]:
    """A runtime, a framework and two apps; `tag` makes every blob unique to a test."""
    return [
        FakeLayer("runtimes", "cpython-3.11", f"runtime {tag}", bulk=bulk),
        FakeLayer("frameworks", "framework-fw", f"framework {tag}", bulk=bulk),
        FakeLayer(
            "applications",
            "app-one",
            f"{app_content} {tag}",
            required=["framework-fw"],
            launch="one",
        ),
        FakeLayer("applications", "app-two", f"app two {tag}", launch="two"),
    ]


def publish_fake(out: Path, layers: list[FakeLayer], *, signature: bytes | None = None) -> Path:
    """Write `out/` as `venvlayers publish` would for `layers`."""
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "__venvstacks__"
    (meta / "env_metadata").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, list[dict[str, Any]]] = {
        "runtimes": [],
        "frameworks": [],
        "applications": [],
    }
    runtime = next(layer.layer_name for layer in layers if layer.category == "runtimes")
    trees = out.parent / f".{out.name}-trees"
    for layer in layers:
        target = layer.install_target or layer.layer_name
        platform = layer.platform or str(build_platform())
        tree = trees / f"{target}-{platform}"
        _make_tree(tree, layer)
        name = f"{target}-{platform}.tar.zst" if layer.platform else f"{target}.tar.zst"
        (out / name).unlink(missing_ok=True)
        info = write_archive(
            tree,
            out / name,
            root_name=target,
            fmt=ArchiveFormat.TAR_ZST,
            clamp_mtime=CLAMP,
            threads=1,
        )
        entry: dict[str, Any] = {
            "layer_name": layer.layer_name,
            "install_target": target,
            "runtime_layer": runtime,
            "lock_version": 1,
            "archive_build": 1,
            "archive_name": name,
            "target_platform": platform,
            "archive_size": info.size,
            "archive_hashes": {"sha256": info.sha256},
        }
        if layer.category != "runtimes":
            entry["required_layers"] = layer.required
        if layer.launch:
            entry["app_launch_module"] = layer.launch
        manifest[layer.category].append(entry)
        (meta / "env_metadata" / f"{layer.layer_name}.json").write_text(
            json.dumps(entry, indent=2, sort_keys=True) + "\n"
        )
    (meta / "venvstacks.json").write_text(
        json.dumps({"layers": manifest}, indent=2, sort_keys=True) + "\n"
    )
    if signature is not None:
        (meta / "venvstacks.json.sig").write_bytes(signature)
    return out


def _make_tree(tree: Path, layer: FakeLayer) -> None:
    if tree.exists():
        import shutil

        shutil.rmtree(tree)
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "content.txt").write_text(layer.content + "\n")
    (tree / "postinstall.py").write_text("# nothing to do\n")
    if layer.bulk:
        rng = random.Random(layer.content)
        (tree / "lib" / "bulk.bin").write_bytes(rng.randbytes(layer.bulk))
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (CLAMP, CLAMP))


def archives(out: Path) -> dict[str, dict[str, Any]]:
    """Layer entries of `out`'s venvstacks.json by archive name."""
    data = json.loads((out / "__venvstacks__" / "venvstacks.json").read_text())
    return {e["archive_name"]: e for entries in data["layers"].values() for e in entries}


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file below `root` by relative path (for comparing directories)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
