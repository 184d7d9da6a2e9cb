"""Finish installing this layer (run by `venvlayers deploy`, or by hand after unpacking).

Usage: <base runtime python> postinstall.py

Stdlib only, and written for any Python 3 the runtime layer may carry. It reads
`share/venv/metadata/venvstacks_layer.json` beside it and creates what archives cannot
hold: the links from a layered environment's `bin/python` to its runtime layer
(archives never contain links leaving their own layer). Everything else in a
venvlayers layer is already relative to the layer, so a deployed stack keeps working
when its whole directory is moved. Safe to run more than once.
"""

import json
import os
import sys
from typing import Any, Dict, NoReturn

LAYER_CONFIG = os.path.join("share", "venv", "metadata", "venvstacks_layer.json")


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"postinstall: {message}\n")
    sys.exit(1)


def _inside(parent: str, path: str) -> bool:
    parent = os.path.normpath(parent)
    path = os.path.normpath(path)
    return path == parent or path.startswith(parent + os.sep)


def _load_config(layer_dir: str) -> Dict[str, Any]:
    path = os.path.join(layer_dir, LAYER_CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {path}: {exc}")
    for key in ("python", "base_python", "site_dir", "pylib_dirs"):
        if key not in config:
            _fail(f"{path} lacks {key!r}; the layer archive is incomplete")
    if not isinstance(config, dict):
        _fail(f"{path} is not a JSON object")
    return config


def _check_peer(layer_dir: str, relative: str, what: str) -> str:
    """Paths in the config may only point into this layer or its sibling layers."""
    target = os.path.normpath(os.path.join(layer_dir, relative))
    if not _inside(os.path.dirname(layer_dir), target):
        _fail(f"{what} {relative!r} points outside the deployment directory")
    return target


def _link(link_path: str, target: str) -> None:
    """Make `link_path` a symlink to `target` (relative), replacing what is there."""
    if os.path.islink(link_path) and os.readlink(link_path) == target:
        return
    tmp = link_path + ".postinstall-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link_path)


def _link_base_python(layer_dir: str, config: Dict[str, Any]) -> None:
    python = _check_peer(layer_dir, config["python"], "python")
    base = _check_peer(layer_dir, config["base_python"], "base_python")
    if python == base:
        return  # a runtime layer: its interpreter is its own
    if not os.path.exists(base):
        _fail(
            f"the runtime layer is missing: {base} does not exist; deploy the runtime "
            "layer beside this one"
        )
    bin_dir = os.path.dirname(python)
    os.makedirs(bin_dir, exist_ok=True)
    _link(python, os.path.relpath(base, bin_dir))
    version = config.get("py_version", "")
    minor = ".".join(version.split(".")[:2])
    names = ["python3"] + ([f"python{minor}"] if minor else [])
    for name in names:
        _link(os.path.join(bin_dir, name), os.path.basename(python))


def _check_lower_layers(layer_dir: str, config: Dict[str, Any]) -> None:
    missing = []
    for relative in config["pylib_dirs"]:
        target = _check_peer(layer_dir, relative, "pylib_dirs entry")
        if not os.path.isdir(target):
            missing.append(relative)
    if missing:
        _fail(
            f"lower layers are missing ({', '.join(missing)}); deploy every layer this one requires"
        )


def main() -> int:
    layer_dir = os.path.dirname(os.path.abspath(__file__))
    config = _load_config(layer_dir)
    if os.name != "nt":
        _link_base_python(layer_dir, config)
    _check_lower_layers(layer_dir, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
