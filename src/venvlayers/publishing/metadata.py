"""Published stack metadata (`__venvstacks__/`), compatible with venvstacks 0.8.

    __venvstacks__/venvstacks.json               every layer of the stack, by category
    __venvstacks__/env_metadata/<layer>.json     one layer (archive fields when published)

Field names are venvstacks'; venvlayers adds `build_inputs_hash` (what the layer was
built from, so an unchanged layer is recognised without rebuilding its archive) and
`archive_options` (format, level, shipped bytecode). JSON Schemas for both files live
in `venvlayers/schemas/`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from .._util.fs import format_json, write_atomic
from ..errors import PublishError
from ..layout import ENV_METADATA_DIR, MANIFEST, METADATA_DIR
from ..names import LayerCategory
from ..planning.plan import LayerPlan
from ..spec.appmodules import modules_hash
from ..spec.stack import ApplicationSpec

__all__ = [
    "ARCHIVE_FIELDS",
    "ENV_METADATA_DIR",
    "MANIFEST",
    "METADATA_DIR",
    "MetadataDir",
    "clamp_time",
    "layer_metadata",
    "schema",
]


ARCHIVE_FIELDS = (
    "archive_build",
    "archive_name",
    "target_platform",
    "archive_size",
    "archive_hashes",
)


def layer_metadata(plan: LayerPlan) -> dict[str, Any]:
    """The archive-independent metadata of a built layer."""
    layer = plan.layer
    runtime = plan.lower[-1] if plan.lower else plan
    lock_meta = plan.lock.metadata or {}
    data: dict[str, Any] = {
        "layer_name": plan.build_name,
        "install_target": plan.deploy_name,
        "requirements_hash": lock_meta.get("requirements_hash", plan.lock.file_hash),
        "lock_version": plan.lock.lock_version or 1,
        "locked_at": plan.lock.locked_at or "",
        "runtime_layer": runtime.deploy_name,
        "python_implementation": layer.runtime_spec.python_implementation,
        # layered environments only link to the runtime; on Windows they copy from it
        "bound_to_implementation": plan.layout.is_runtime or plan.layout.windows,
        "build_inputs_hash": plan.inputs_hash,
    }
    if not plan.layout.is_runtime:
        data["required_layers"] = [low.deploy_name for low in plan.lower[:-1]]
    if isinstance(layer, ApplicationSpec):
        data["app_launch_module"] = layer.launch_module_name
        data["app_launch_module_hash"] = modules_hash([layer.launch_module], boundary=plan.spec_dir)
        if layer.support_modules:
            data["app_support_modules"] = [
                {"name": p.stem, "hash": modules_hash([p], boundary=plan.spec_dir)}
                for p in layer.support_modules
            ]
    return data


def clamp_time(locked_at: str, source_date_epoch: str | None) -> int:
    """Archive mtimes are clamped to SOURCE_DATE_EPOCH, else to the lock time."""
    if source_date_epoch:
        try:
            return max(0, int(source_date_epoch))
        except ValueError:
            raise PublishError(
                f"SOURCE_DATE_EPOCH={source_date_epoch!r} is not a whole number of seconds"
            ) from None
    try:
        return max(0, int(datetime.fromisoformat(locked_at).timestamp()))
    except ValueError:
        raise PublishError(f"lock time {locked_at!r} is not an ISO timestamp; relock") from None


@dataclass(frozen=True)
class MetadataDir:
    """The `__venvstacks__` directory of an output (or export) directory."""

    output_dir: Path

    @property
    def path(self) -> Path:
        return self.output_dir / METADATA_DIR

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def layer_file(self, build_name: str) -> Path:
        return self.path / ENV_METADATA_DIR / f"{build_name}.json"

    def read_layer(self, build_name: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.layer_file(build_name).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_layer(self, data: Mapping[str, Any]) -> None:
        write_atomic(self.layer_file(str(data["layer_name"])), format_json(data))

    def remove_layer(self, build_name: str) -> None:
        self.layer_file(build_name).unlink(missing_ok=True)

    def write_manifest(self, layers: Iterable[tuple[LayerCategory, Mapping[str, Any]]]) -> None:
        """`venvstacks.json`: every layer with metadata, by category, in stack order."""
        by_category: dict[str, list[Mapping[str, Any]]] = {c.value: [] for c in LayerCategory}
        for category, data in layers:
            by_category[category.value].append(data)
        write_atomic(self.manifest, format_json({"layers": by_category}))


def schema(name: str) -> dict[str, Any]:
    """A published JSON Schema: `env_metadata`, `venvstacks` or `layer_config`."""
    text = resources.files("venvlayers").joinpath(f"schemas/{name}.schema.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data
