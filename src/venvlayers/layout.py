"""Where things are inside a layer and a published stack; the layer config (venvstacks 0.8).

Every path a layer records is relative to the layer directory, and paths into other
layers go through their *deployed* names (`../framework-sci@2/...`). Layers always
sit side by side - in the build directory (where versioned layers get an alias
symlink under their deployed name), in an export directory and on the target - so
the same relative paths hold everywhere and a deployed stack can be moved as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .platforms import TargetPlatform

__all__ = [
    "BUILD_STAMP",
    "ENV_METADATA_DIR",
    "LAYER_CONFIG",
    "MANIFEST",
    "METADATA_DIR",
    "METADATA_PATH",
    "POSTINSTALL",
    "POSTINSTALL_SOURCE",
    "SIGNATURE",
    "SIGNATURE_PATH",
    "SITECUSTOMIZE",
    "LayerConfig",
    "Layout",
    "peer_path",
]

LAYER_CONFIG = "share/venv/metadata/venvstacks_layer.json"
BUILD_STAMP = "share/venv/metadata/venvlayers_build.json"
POSTINSTALL = "postinstall.py"
POSTINSTALL_SOURCE = Path(__file__).parent / "_injected" / POSTINSTALL
"""The file copied into every layer as POSTINSTALL (and run as the bytecode compiler)."""
SITECUSTOMIZE = "sitecustomize.py"

# A published (or exported) stack: the metadata directory beside the layer archives,
# with venvstacks' names; the signature over the exact bytes of MANIFEST is ours.
METADATA_DIR = "__venvstacks__"
MANIFEST = "venvstacks.json"
ENV_METADATA_DIR = "env_metadata"
SIGNATURE = f"{MANIFEST}.sig"
METADATA_PATH = f"{METADATA_DIR}/{MANIFEST}"
SIGNATURE_PATH = f"{METADATA_DIR}/{SIGNATURE}"


class LayerConfig(TypedDict, total=False):
    """`share/venv/metadata/venvstacks_layer.json`: what an embedding program needs."""

    python: str  # this layer's interpreter, relative to the layer
    py_version: str  # X.Y.Z
    base_python: str  # the runtime's interpreter, relative to the layer
    site_dir: str  # this layer's site-packages
    pylib_dirs: list[str]  # lower layers' site-packages, in sys.path order
    dynlib_dirs: list[str]  # lower layers' shared library directories this layer uses
    launch_module: str  # applications: run with `python -m`


@dataclass(frozen=True)
class Layout:
    """Path conventions of one layer on one platform."""

    platform: TargetPlatform
    py_version: str  # X.Y.Z of the runtime
    is_runtime: bool

    @property
    def py_minor(self) -> str:
        return ".".join(self.py_version.split(".")[:2])

    @property
    def windows(self) -> bool:
        return self.platform.os == "win"

    @property
    def runtime_python(self) -> str:
        """The runtime layer's interpreter (relative to the runtime layer)."""
        return "python.exe" if self.windows else f"bin/python{self.py_minor}"

    @property
    def python(self) -> str:
        """This layer's interpreter, relative to the layer."""
        if self.is_runtime:
            return self.runtime_python
        return "Scripts/python.exe" if self.windows else "bin/python"

    @property
    def bin_dir(self) -> str:
        if self.windows:
            return "" if self.is_runtime else "Scripts"
        return "bin"

    @property
    def site_dir(self) -> str:
        if self.windows:
            return "Lib/site-packages"
        return f"lib/python{self.py_minor}/site-packages"

    def python_links(self) -> list[str]:
        """Interpreter names a layered environment's bin dir links to the runtime."""
        if self.windows or self.is_runtime:
            return []
        return ["bin/python", "bin/python3", f"bin/python{self.py_minor}"]


def peer_path(deploy_name: str, relative: str) -> str:
    """A path inside sibling layer `deploy_name`, relative to another layer's directory."""
    return f"../{deploy_name}/{relative}"
