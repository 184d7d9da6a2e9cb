"""`venvlayers publish` and `local-export`: layers as reproducible archives or directories.

Archives are written straight from the build environments (no staging copy), layers
in parallel, each compressor on every core, with the same bytes for the same layer
content wherever and whenever it was built. What an archive may not contain is left
out (bytecode caches unless asked for, the interpreter links into the runtime layer
that `postinstall.py` recreates on the target), and a layer whose build does not
match its lock and spec is refused rather than published stale.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import signing
from .._util.fs import remove_tree
from .._util.proc import run
from ..archives.archive import (
    DEFAULT_FORMAT,
    ArchiveFormat,
    cleanup_partials,
    default_level,
    write_archive,
)
from ..bytecode import (
    SHIPPED_SHARE,
    compile_layer,
    layer_sources,
    shipping_threshold,
    source_of_pyc,
)
from ..errors import PublishError
from ..layout import METADATA_PATH, POSTINSTALL, SIGNATURE_PATH
from ..names import BuildName, DeployName
from ..planning.plan import LayerPlan, plan_selected, read_stamp
from ..progress import NULL_REPORTER, Reporter
from ..spec.stack import StackSpec
from .metadata import ARCHIVE_FIELDS, MetadataDir, clamp_time, layer_metadata
from .sign import sign_stack

__all__ = [
    "ExportOptions",
    "LayerOutput",
    "PublishOptions",
    "export_stack",
    "layer_exclude",
    "publish_stack",
]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishOptions:
    build_dir: Path | None = None  # default: <spec dir>/_build
    output_dir: Path | None = None  # default: <spec dir>/_artifacts
    include: Sequence[str] = ()
    allow_missing: bool = False
    publish_dependencies: bool = False  # with include: also the layers below
    publish_derived: bool = False  # with include: also the layers above
    fmt: ArchiveFormat = DEFAULT_FORMAT
    level: int | None = None
    tag_outputs: bool = False
    force: bool = False
    dry_run: bool = False
    compile_bytecode: bool = False
    """Ship the bytecode of every module (a deploy then compiles nothing)."""
    bytecode_share: float = SHIPPED_SHARE
    """Else ship the bytecode of the largest modules holding this share of the source
    (0: none; see `venvlayers.bytecode`)."""
    sign_key: signing.SigningKey | None = None  # sign venvstacks.json (see `sign`)
    jobs: int = 0


@dataclass(frozen=True)
class ExportOptions:
    build_dir: Path | None = None
    output_dir: Path | None = None  # default: <spec dir>/_export
    include: Sequence[str] = ()
    allow_missing: bool = False
    export_dependencies: bool = True
    export_derived: bool = False
    force: bool = False
    dry_run: bool = False
    compile_bytecode: bool = True
    """Give the exported layers checked-hash bytecode (see `venvlayers.bytecode`)."""


@dataclass(frozen=True)
class LayerOutput:
    """What publishing or exporting did with one layer."""

    build_name: BuildName
    deploy_name: DeployName
    action: str  # "published", "exported", "unchanged", "would publish", "would export"
    path: Path  # the archive or exported directory
    metadata: dict[str, Any]
    seconds: float = 0.0


def layer_exclude(
    plan: LayerPlan, *, bytecode: bool, min_source: int | None = None
) -> Callable[[str], bool]:
    """What a layer's archive leaves out (paths relative to the layer, POSIX).

    With `bytecode`, the `.pyc` files stay, only those of sources of `min_source` bytes
    or more when given; without, every bytecode file goes.
    """
    links = set(plan.layout.python_links())  # point into the runtime: made by postinstall

    def exclude(relative: str) -> bool:
        if relative in links or relative == ".lock":  # uv's lock file for the environment
            return True
        name = relative.rpartition("/")[2]
        if name.endswith(".postinstall-tmp"):
            return True
        if not bytecode:
            return name == "__pycache__" or name.endswith((".pyc", ".pyo"))
        if name == "__pycache__":  # only with bytecode it ships: the build's leftovers
            try:  # (other Pythons', other shares') must not change the archive
                children = os.listdir(plan.path / relative)
            except OSError:
                return True
            return all(exclude(f"{relative}/{child}") for child in children)
        if not name.endswith(".pyc"):
            return False
        if ".opt-" in name:
            return True
        if min_source is None:
            return False
        source = source_of_pyc(relative)
        try:
            return source is None or (plan.path / source).stat().st_size < min_source
        except OSError:
            return True  # bytecode of nothing: stale

    return exclude


def _selected_plans(
    stack: StackSpec,
    options: PublishOptions | ExportOptions,
    dependencies: bool,
    derived: bool,
    reporter: Reporter,
) -> tuple[tuple[LayerPlan, ...], Path, MetadataDir]:
    """The layers to publish or export (each must have a current build) and where to."""
    work = plan_selected(
        stack,
        options.build_dir,
        options.include,
        allow_missing=options.allow_missing,
        dependencies=dependencies or not options.include,
        derived=derived,
        reporter=reporter,
    )
    for plan in work.ordered:
        stamp = read_stamp(plan.path)
        if stamp is None:
            raise PublishError(
                f"{plan.build_name}: not built (no finished build in {plan.path}); "
                "run `venvlayers build` first"
            )
        if stamp.get("inputs_hash") != plan.inputs_hash:
            raise PublishError(
                f"{plan.build_name}: the build in {plan.path} no longer matches its lock or "
                "spec; run `venvlayers build` before publishing"
            )
    default = "_artifacts" if isinstance(options, PublishOptions) else "_export"
    output_dir = (options.output_dir or stack.spec_dir / default).absolute()
    return work.ordered, output_dir, MetadataDir(output_dir)


# -- publish ----------------------------------------------------------------------------


def publish_stack(
    stack: StackSpec, options: PublishOptions = PublishOptions(), reporter: Reporter = NULL_REPORTER
) -> list[LayerOutput]:
    """Write an archive and metadata for each selected layer, then the stack manifest."""
    plans, output_dir, meta_dir = _selected_plans(
        stack, options, options.publish_dependencies, options.publish_derived, reporter
    )
    if not options.dry_run:
        output_dir.mkdir(parents=True, exist_ok=True)
        # what an interrupted publish left: unfinished archives, unrenamed staging files
        for leftover in [*cleanup_partials(output_dir), *output_dir.glob(".*.staging.*")]:
            leftover.unlink(missing_ok=True)
            _LOG.info("removed the unfinished %s", leftover.name)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    jobs = options.jobs or 2

    def one(plan: LayerPlan) -> LayerOutput:
        return _publish_layer(plan, options, output_dir, meta_dir, epoch, reporter)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outputs = list(pool.map(one, plans))
    if not options.dry_run:
        changed = _write_manifest(stack, meta_dir)
        _sign_or_drop_stale(output_dir, options.sign_key, changed, reporter)
    return outputs


def _write_manifest(stack: StackSpec, meta_dir: MetadataDir) -> bool:
    """Every layer of the stack that has metadata: a partial publish keeps the others.

    Returns whether the file's bytes changed.
    """
    entries = []
    for layer in stack.layers():
        data = meta_dir.read_layer(layer.build_name)
        if data is not None:
            entries.append((layer.category, data))
    try:
        before = meta_dir.manifest.read_bytes()
    except OSError:
        before = None
    meta_dir.write_manifest(entries)
    return meta_dir.manifest.read_bytes() != before


def _sign_or_drop_stale(
    output_dir: Path, key: signing.SigningKey | None, changed: bool, reporter: Reporter
) -> None:
    """Sign the new metadata, or remove a signature it no longer matches.

    Without a key, a signature over unchanged metadata stays: it is still valid.
    """
    if key is not None:
        signed = sign_stack(output_dir, key)
        reporter.note(f"signed {METADATA_PATH} with {signed.key_type} {signed.fingerprint}")
        return
    stale = output_dir / SIGNATURE_PATH
    if changed and stale.exists():
        stale.unlink()
        reporter.note(
            f"removed {SIGNATURE_PATH}: it signed the previous metadata; sign again with "
            "`venvlayers sign` or publish with --sign-key"
        )


def _archive_name(deploy: str, platform: str, build: int, fmt: ArchiveFormat, tag: bool) -> str:
    return f"{deploy}-{platform}-{build}.{fmt.value}" if tag else f"{deploy}.{fmt.value}"


def _publish_layer(
    plan: LayerPlan,
    options: PublishOptions,
    output_dir: Path,
    meta_dir: MetadataDir,
    epoch: str | None,
    reporter: Reporter,
) -> LayerOutput:
    meta = layer_metadata(plan)
    meta["target_platform"] = str(plan.layout.platform)
    # how the archive was made: a change means a new archive even for the same build
    shipped: bool | dict[str, int] = options.compile_bytecode
    min_source = None
    if not options.compile_bytecode and options.bytecode_share > 0:
        min_source = _shipping_threshold(plan, options.bytecode_share)
        if min_source is not None:
            shipped = {"min_source_bytes": min_source}
    meta["archive_options"] = {
        "format": options.fmt.value,
        "level": options.level if options.level is not None else default_level(options.fmt),
        "bytecode": shipped,
    }
    previous = meta_dir.read_layer(plan.build_name)
    if not options.force and _unchanged(previous, meta, output_dir, options.fmt):
        assert previous is not None
        archive = output_dir / str(previous["archive_name"])
        return LayerOutput(plan.build_name, plan.deploy_name, "unchanged", archive, previous)
    if options.dry_run:
        name = _archive_name(plan.deploy_name, meta["target_platform"], 0, options.fmt, False)
        return LayerOutput(
            plan.build_name, plan.deploy_name, "would publish", output_dir / name, meta
        )
    started = time.monotonic()
    if shipped is not False:
        compile_bytecode(plan, reporter, min_source=min_source)
    staging = output_dir / f".{plan.deploy_name}.staging.{options.fmt.value}"
    info = write_archive(
        plan.path,
        staging,
        root_name=plan.deploy_name,
        fmt=options.fmt,
        level=options.level,
        clamp_mtime=clamp_time(meta["locked_at"], epoch),
        exclude=layer_exclude(plan, bytecode=shipped is not False, min_source=min_source),
        reporter=reporter,
        report_key=f"publish:{plan.build_name}",
    )
    build = 1
    if previous and previous.get("lock_version") == meta["lock_version"]:
        last = previous.get("archive_build", 0)
        last = last if isinstance(last, int) else 0
        same = previous.get("archive_hashes", {}).get("sha256") == info.sha256
        build = last if same and last > 0 else last + 1
    name = _archive_name(
        plan.deploy_name, meta["target_platform"], build, options.fmt, options.tag_outputs
    )
    meta.update(
        archive_build=build,
        archive_name=name,
        archive_size=info.size,
        archive_hashes={"sha256": info.sha256},
    )
    # the old metadata goes first: an interrupted publish never pairs it with a new archive
    meta_dir.remove_layer(plan.build_name)
    final = output_dir / name
    os.replace(staging, final)
    meta_dir.write_layer(meta)
    seconds = time.monotonic() - started
    _LOG.info("published %s (%d bytes) in %.1fs", name, info.size, seconds)
    return LayerOutput(plan.build_name, plan.deploy_name, "published", final, meta, seconds)


def _unchanged(
    previous: dict[str, Any] | None, meta: dict[str, Any], output_dir: Path, fmt: ArchiveFormat
) -> bool:
    if previous is None:
        return False
    for key, value in meta.items():
        if previous.get(key) != value:
            return False
    name = previous.get("archive_name")
    if not isinstance(name, str) or not name.endswith(f".{fmt.value}"):
        return False
    if any(key not in previous for key in ARCHIVE_FIELDS):
        return False
    archive = output_dir / name
    return archive.is_file() and archive.stat().st_size == previous.get("archive_size")


def _shipping_threshold(plan: LayerPlan, share: float) -> int | None:
    sources = layer_sources(plan.path, plan.layout.site_dir)
    return shipping_threshold(((plan.path / s).stat().st_size for s in sources), share)


def compile_bytecode(
    plan: LayerPlan, reporter: Reporter = NULL_REPORTER, *, min_source: int | None = None
) -> None:
    """Checked-hash .pyc files (PEP 552) for what the layer ships, as a deploy makes them.

    Every source, or only those of `min_source` bytes or more. Compiled by the build's
    runtime interpreter with layer-relative file names, so the same layer content gives
    the same bytes wherever it was built.
    """
    runtime = plan.lower[-1] if plan.lower else plan
    python = runtime.path / runtime.layout.python
    sources = layer_sources(plan.path, plan.layout.site_dir)
    if min_source is not None:
        sources = [s for s in sources if (plan.path / s).stat().st_size >= min_source]
    # compiled alone, each file: an archive's bytes must not depend on compile order
    result = compile_layer(python, plan.path, sources, error=PublishError, reproducible=True)
    for path, reason in result.failed:
        reporter.note(f"warning: {plan.build_name}: cannot compile {path}: {reason}")


# -- local export -----------------------------------------------------------------------


def export_stack(
    stack: StackSpec, options: ExportOptions = ExportOptions(), reporter: Reporter = NULL_REPORTER
) -> list[LayerOutput]:
    """Copy the selected layers into plain directories (deployed names) and finish them."""
    plans, output_dir, meta_dir = _selected_plans(
        stack, options, options.export_dependencies, options.export_derived, reporter
    )
    outputs: list[LayerOutput] = []
    for plan in plans:  # in dependency order: postinstall needs the runtime in place
        outputs.append(_export_layer(plan, options, output_dir, meta_dir, reporter))
    if not options.dry_run:
        _write_manifest(stack, meta_dir)
    return outputs


def _export_layer(
    plan: LayerPlan,
    options: ExportOptions,
    output_dir: Path,
    meta_dir: MetadataDir,
    reporter: Reporter,
) -> LayerOutput:
    meta = layer_metadata(plan)
    dest = output_dir / plan.deploy_name
    previous = meta_dir.read_layer(plan.build_name)
    if not options.force and previous == meta and dest.is_dir():
        return LayerOutput(plan.build_name, plan.deploy_name, "unchanged", dest, meta)
    if options.dry_run:
        return LayerOutput(plan.build_name, plan.deploy_name, "would export", dest, meta)
    key = f"export:{plan.build_name}"
    reporter.begin(key, f"export {plan.deploy_name}")
    started = time.monotonic()
    output_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.remove_layer(plan.build_name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{plan.deploy_name}.export-", dir=output_dir))
    tmp.chmod(0o755)  # mkdtemp makes it private; an exported layer is for everyone to run
    try:
        _copy_tree(plan.path, tmp, layer_exclude(plan, bytecode=False))
        run_postinstall(tmp, plan, output_dir)
        if options.compile_bytecode:
            _compile_export(tmp, plan, output_dir, reporter)
        if dest.exists() or dest.is_symlink():
            trash = output_dir / f".{plan.deploy_name}.old-{os.getpid()}"
            os.replace(dest, trash)
            os.replace(tmp, dest)
            remove_tree(trash)
        else:
            os.replace(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        reporter.end(key, "failed")
        raise
    meta_dir.write_layer(meta)
    reporter.end(key, "exported")
    seconds = time.monotonic() - started
    return LayerOutput(plan.build_name, plan.deploy_name, "exported", dest, meta, seconds)


def _copy_tree(source: Path, dest: Path, exclude: Callable[[str], bool]) -> None:
    """Copy a layer (symlinks as symlinks), leaving out what `exclude` names."""

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = f"{prefix}{entry.name}"
                if exclude(rel):
                    continue
                target = dest / rel
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), target)
                elif entry.is_dir():
                    target.mkdir()
                    walk(Path(entry.path), f"{rel}/")
                else:
                    shutil.copy2(entry.path, target)

    walk(source, "")


def _runtime_python(layer_dir: Path, plan: LayerPlan, stack_dir: Path) -> Path:
    """The runtime's interpreter for a layer at `layer_dir` beside the layers of `stack_dir`."""
    runtime = plan.lower[-1] if plan.lower else plan
    if plan.layout.is_runtime:
        return layer_dir / plan.layout.python
    return stack_dir / runtime.deploy_name / runtime.layout.python


def run_postinstall(layer_dir: Path, plan: LayerPlan, stack_dir: Path) -> None:
    """Run the layer's postinstall.py with the runtime layer's python from `stack_dir`.

    Without its compile step: the export compiles with `_compile_export`, which
    reports the files that do not compile.
    """
    python = _runtime_python(layer_dir, plan, stack_dir)
    run(
        [python, "-I", "-B", str(layer_dir / POSTINSTALL), "--no-compile"],
        what=f"postinstall of {plan.deploy_name}",
        error=PublishError,
    )


def _compile_export(layer_dir: Path, plan: LayerPlan, stack_dir: Path, reporter: Reporter) -> None:
    python = _runtime_python(layer_dir, plan, stack_dir)
    sources = layer_sources(layer_dir, plan.layout.site_dir)
    final = stack_dir / plan.deploy_name  # where it is renamed to, and loaded from
    result = compile_layer(python, layer_dir, sources, error=PublishError, names_dir=final)
    for path, reason in result.failed:
        reporter.note(f"warning: {plan.deploy_name}: cannot compile {path}: {reason}")
