"""Small fake published stacks for the deploy tests, and helpers to inspect targets.

The fake runtime's `bin/python3.11` is a shell script that runs the test interpreter
with the invoking layer's `lib/site` on the path, so that layers, archives, metadata and
postinstall are real while a whole deploy takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.httpd import files_handler, serving
from venvlayers import deploying
from venvlayers.archives import ArchiveFormat, write_archive
from venvlayers.layout import POSTINSTALL_SOURCE
from venvlayers.platforms import build_platform

PLATFORM = build_platform()
POSTINSTALL = POSTINSTALL_SOURCE.read_text()
CLAMP = 1_700_000_000

HELLO = """\
import json, os, sys
VERSION = "{version}"
print(VERSION, *sys.argv[1:], flush=True)
if "--stdin" in sys.argv:
    print(sys.stdin.read().upper(), flush=True)
if "--env" in sys.argv:
    print(json.dumps({{k: os.environ.get(k) for k in ("PYTHONPATH", "VIRTUAL_ENV", "KEEP")}}))
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
"""


def runtime_script(log: Path | None = None) -> str:
    # `$0` is the link the layer's bin/python is: its layer's lib/site goes on the path;
    # `log` records each start, and whether the caller's environment leaked into it
    record = f'printf "%s %s leak=%s\\n" "$0" "$*" "${{VL_TEST_LEAK:-}}" >> "{log}"' if log else ""
    return textwrap.dedent(f"""\
        #!/bin/sh
        {record}
        layer=$(dirname "$(dirname "$0")")
        PYTHONPATH="$layer/lib/site" exec {sys.executable} "$@"
        """)


class FakeStack:
    """Layer trees plus `publish()` writing archives and `venvstacks.json` like publish does.

    Layers: runtime `rt`; `framework-fw` on it; apps `app-hello` (on fw) and
    `app-other@1` (versioned, on the runtime only).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        # a layer's `archive_options.bytecode`, when its archive ships .pyc files
        self.bytecode: dict[str, object] = {}
        self.python_log = root / "python.log"
        self.layers: dict[str, dict[str, Any]] = {}
        self.add(
            "runtimes",
            "rt",
            "rt",
            files={"bin/python3.11": runtime_script(self.python_log), "lib/site/rt.py": ""},
        )
        self.add("frameworks", "framework-fw", "framework-fw", files={"lib/site/fw.py": "X = 1\n"})
        self.add(
            "applications",
            "app-hello",
            "app-hello",
            required=["framework-fw"],
            launch="hello",
            files={"lib/site/hello.py": HELLO.format(version="v1")},
        )
        self.add(
            "applications",
            "app-other",
            "app-other@1",
            launch="other",
            files={"lib/site/other.py": "print('other')\n"},
        )

    def add(
        self,
        category: str,
        layer_name: str,
        install_target: str,
        *,
        files: dict[str, str],
        required: list[str] | None = None,
        launch: str | None = None,
    ) -> None:
        self.layers[layer_name] = {
            "category": category,
            "layer_name": layer_name,
            "install_target": install_target,
            "files": dict(files),
            "required": list(required or []),
            "launch": launch,
        }

    def tree(self, layer: dict[str, Any], dest: Path) -> Path:
        is_runtime = layer["category"] == "runtimes"
        config: dict[str, Any] = {
            "python": "bin/python3.11" if is_runtime else "bin/python",
            "base_python": "bin/python3.11" if is_runtime else "../rt/bin/python3.11",
            "py_version": "3.11.7",
            "site_dir": "lib/site",
            "pylib_dirs": []
            if is_runtime
            else [f"../{r}/lib/site" for r in [*layer["required"], "rt"]],
            "dynlib_dirs": [],
        }
        if layer["launch"]:
            config["launch_module"] = layer["launch"]
        files = {
            **layer["files"],
            "postinstall.py": POSTINSTALL,
            "share/venv/metadata/venvstacks_layer.json": json.dumps(config),
        }
        for rel, text in files.items():
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(text)
            if rel.startswith("bin/"):
                path.chmod(0o755)
        return dest

    def publish(
        self, out: Path, *, fmt: ArchiveFormat = ArchiveFormat.TAR_GZ, platform: str = ""
    ) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, list[dict[str, Any]]] = {
            "runtimes": [],
            "frameworks": [],
            "applications": [],
        }
        for layer in self.layers.values():
            target = layer["install_target"]
            src = self.tree(layer, self.root / "trees" / f"{target}-{os.urandom(4).hex()}")
            name = f"{target}.{fmt.value}"
            (out / name).unlink(missing_ok=True)
            info = write_archive(
                src, out / name, root_name=target, fmt=fmt, clamp_mtime=CLAMP, threads=1
            )
            entry: dict[str, Any] = {
                "layer_name": layer["layer_name"],
                "install_target": target,
                "requirements_hash": "sha256:" + "0" * 64,
                "lock_version": int(target.partition("@")[2] or 1),
                "locked_at": "2024-01-01T00:00:00+00:00",
                "runtime_layer": "rt",
                "python_implementation": "cpython@3.11.7",
                "bound_to_implementation": layer["category"] == "runtimes",
                "archive_build": 1,
                "archive_name": name,
                "target_platform": platform or str(PLATFORM),
                "archive_size": info.size,
                "archive_hashes": {"sha256": info.sha256},
                # no bytecode shipped: the deploy compiles these while unpacking them
                "archive_options": {
                    "format": fmt.value,
                    "level": 6,
                    "bytecode": self.bytecode.get(layer["layer_name"], False),
                },
            }
            if layer["category"] != "runtimes":
                entry["required_layers"] = layer["required"]
            if layer["launch"]:
                entry["app_launch_module"] = layer["launch"]
                entry["app_launch_module_hash"] = "sha256:" + "1" * 64
            manifest[layer["category"]].append(entry)
        meta = out / "__venvstacks__"
        meta.mkdir(exist_ok=True)
        (meta / "venvstacks.json").write_text(json.dumps({"layers": manifest}, indent=2))
        return out


def edit_metadata(out: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = out / "__venvstacks__" / "venvstacks.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def layer_entry(data: dict[str, Any], layer_name: str) -> dict[str, Any]:
    for entries in data["layers"].values():
        for entry in entries:
            if entry["layer_name"] == layer_name:
                return entry  # type: ignore[no-any-return]
    raise KeyError(layer_name)


def replace_archive(out: Path, layer_name: str, archive: Path) -> None:
    """Put `archive` in place of a layer's archive, with metadata that vouches for it."""
    data = archive.read_bytes()

    def change(meta: dict[str, Any]) -> None:
        entry = layer_entry(meta, layer_name)
        (out / entry["archive_name"]).write_bytes(data)
        entry["archive_size"] = len(data)
        entry["archive_hashes"] = {"sha256": hashlib.sha256(data).hexdigest()}

    edit_metadata(out, change)


def snapshot(target: Path) -> dict[str, tuple[str, str]]:
    """Everything below `target` (but the lock file): kinds, contents, link targets, inodes."""
    found: dict[str, tuple[str, str]] = {}
    if not target.exists():
        return found
    for path in sorted(target.rglob("*")):
        rel = path.relative_to(target).as_posix()
        if rel == ".venvlayers/lock":
            continue
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir", str(st.st_ino))
        elif "__pycache__" not in rel:
            found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def run_hello(target: Path, *args: str, app: str = "hello") -> subprocess.CompletedProcess[str]:
    command = deploying.app_command(app, location=target, args=args)
    return subprocess.run(command.argv, env=dict(command.env), capture_output=True, text=True)


def leftovers(target: Path) -> list[str]:
    state_dir = target / ".venvlayers"
    names = [p.name for p in state_dir.iterdir()] if state_dir.is_dir() else []
    return sorted(
        n for n in names if n.startswith(("staging-", "downloads-")) or n.endswith(".tmp")
    ) + sorted(p.name for p in target.glob(".*") if p.name != ".venvlayers")


# -- sources and metadata ----------------------------------------------------------------


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for `tmp_path/www`: (base URL, directory)."""
    root = tmp_path / "www"
    root.mkdir()

    with serving(files_handler(root)) as url:
        yield url, root
