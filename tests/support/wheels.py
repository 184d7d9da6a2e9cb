"""Write small, valid, reproducible wheels for tests, and compile C code to put in them.

Tests need packages they fully control (names, versions, dependencies, platform tags,
native libraries) without a network or a build backend. A wheel is only a zip file with
a `.dist-info` directory, so writing one directly is simpler, faster and more predictable
than running setuptools or hatchling on a generated project.

What makes these wheels valid (the binary distribution format spec, PEP 427/491):

- file name `{name}-{version}[-{build}]-{python}-{abi}-{platform}.whl` with the name
  normalised (PEP 503, `-` spelled `_`), the version normalised (PEP 440) and each tag
  component a sorted, `.`-joined set (a "compressed tag set");
- `{name}-{version}.dist-info/METADATA`, `WHEEL` (one `Tag:` line per expanded tag),
  `entry_points.txt` when there are entry points, and `RECORD` with the urlsafe-base64
  sha256 (unpadded) and size of every other member;
- optional `{name}-{version}.data/<scheme>/...` members for the `scripts`, `data`,
  `headers`, `purelib` and `platlib` install schemes.

What makes them reproducible: members in a fixed order (sorted, `.dist-info` last,
`RECORD` very last), a fixed timestamp (1980-01-01, the earliest a zip can hold),
fixed permissions and creator system, and a fixed compression level. Building the
same `WheelSpec` twice gives byte-identical files.

The C helpers drive the system compiler (`$CC`, else `gcc`, else `cc`) and produce ELF
shared objects, so they are for Linux only. They compile in a scratch directory using
relative file names so no absolute path ends up in the output, which keeps the result
byte-identical between runs on the same toolchain.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, parse_tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

__all__ = [
    "DATA_SCHEMES",
    "CompileError",
    "FileContent",
    "WheelSpec",
    "build_sdist",
    "build_wheel",
    "c_compiler",
    "check_wheel",
    "compile_extension_module",
    "compile_shared_library",
    "extension_filename",
    "interpreter_tag",
    "record_hash",
]

FileContent = bytes | str
"""Member content; `str` is written as UTF-8."""

DATA_SCHEMES = frozenset({"purelib", "platlib", "headers", "scripts", "data"})
"""The install schemes a wheel's `.data` directory may contain."""

GENERATOR = "venvlayers-tests (tests/support/wheels.py)"

# The earliest timestamp a zip member can carry; any fixed value would do, this one is
# the conventional "no meaningful date" marker (also used by reproducible-builds tools).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_UNIX = 3  # "created on Unix" so external_attr holds POSIX permissions everywhere
_COMPRESS_LEVEL = 6

# PEP 508 distribution names: letters, digits and . _ - not at either end.
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_EXTRA_RE = _NAME_RE


@dataclass(frozen=True)
class WheelSpec:
    """Everything that goes into one wheel.

    `files` are installed relative to site-packages (purelib or platlib, as the wheel's
    `Root-Is-Purelib` says); `data` maps an install scheme (see `DATA_SCHEMES`) to the
    files under `{name}-{version}.data/<scheme>/`. `tags` are wheel tags such as
    `py3-none-any` or `cp311-cp311-manylinux_2_17_x86_64`; a compressed tag set
    (`py2.py3-none-any`) is expanded. `entry_points` maps a group (`console_scripts`,
    `gui_scripts`, ...) to `{name: "module:function"}`. `purelib=None` means "pure when
    every tag's platform is `any`". `extras` are the `Provides-Extra` names that
    `requires` may refer to with `extra == "..."` markers.
    """

    name: str
    version: str
    files: Mapping[str, FileContent] = field(default_factory=dict)
    requires: Sequence[str] = ()
    tags: Sequence[str] = ("py3-none-any",)
    entry_points: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    purelib: bool | None = None
    data: Mapping[str, Mapping[str, FileContent]] = field(default_factory=dict)
    requires_python: str | None = None
    summary: str = ""
    extras: Sequence[str] = ()
    build_tag: str | None = None

    def __post_init__(self) -> None:
        # Report every problem at once: a fixture author fixes them in one go.
        problems: list[str] = []
        if not _NAME_RE.match(self.name):
            problems.append(f"invalid distribution name {self.name!r}")
        try:
            Version(self.version)
        except InvalidVersion:
            problems.append(f"invalid version {self.version!r}")
        for req in self.requires:
            try:
                Requirement(req)
            except InvalidRequirement as exc:
                problems.append(f"invalid requirement {req!r}: {exc}")
        for extra in self.extras:
            if not _EXTRA_RE.match(extra):
                problems.append(f"invalid extra name {extra!r}")
        if not self.tags:
            problems.append("at least one tag is needed")
        for tag in self.tags:
            try:
                parse_tag(tag)
            except ValueError:
                problems.append(f"invalid wheel tag {tag!r}")
        if self.build_tag is not None and not re.fullmatch(r"\d[A-Za-z0-9_.]*", self.build_tag):
            problems.append(f"a build tag must start with a digit, not {self.build_tag!r}")
        for scheme in self.data:
            if scheme not in DATA_SCHEMES:
                problems.append(f"unknown data scheme {scheme!r} (one of {sorted(DATA_SCHEMES)})")
        # The writer's own directories are only named once name and version are valid.
        owned = () if problems else (self.dist_info_dir(), self.data_dir())
        for path in self._all_member_paths_unchecked():
            problem = _path_problem(path)
            if problem:
                problems.append(problem)
            elif PurePosixPath(path).parts[0] in owned:
                problems.append(f"{path!r} is inside a directory the wheel writer owns")
        for group, entries in self.entry_points.items():
            for script, target in entries.items():
                if not re.fullmatch(r"[\w.]+(:[\w.]+)?", target):
                    problems.append(f"entry point {group}.{script}: bad target {target!r}")
                if not script or "=" in script or script.strip() != script:
                    problems.append(f"entry point {group}: bad name {script!r}")
        if not problems:
            try:
                _ = self.compressed_tag  # raises when the tags need several wheels
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            label = f"{self.name} {self.version}"
            raise ValueError(f"{label}: " + "; ".join(problems))

    def _all_member_paths_unchecked(self) -> list[str]:
        paths = list(self.files)
        for files in self.data.values():
            paths.extend(files)
        return paths

    # -- names ------------------------------------------------------------------------

    @property
    def distribution(self) -> str:
        """The name as file names spell it: normalised, with `_` for separators."""
        return canonicalize_name(self.name).replace("-", "_")

    @property
    def normalized_version(self) -> str:
        """The PEP 440 normal form (`1.0` stays `1.0`; `1.0-rc1` becomes `1.0rc1`)."""
        return str(Version(self.version))

    @property
    def expanded_tags(self) -> list[Tag]:
        """Every tag the wheel claims, sorted, duplicates removed."""
        found: set[Tag] = set()
        for tag in self.tags:
            found.update(parse_tag(tag))
        return sorted(found, key=str)

    @property
    def compressed_tag(self) -> str:
        """The `python-abi-platform` part of the file name.

        A file name can only express a cartesian product of its components, so a set
        such as {cp311-cp311-linux_x86_64, py3-none-any} needs two wheels.
        """
        expanded = set(self.expanded_tags)
        pythons = sorted({t.interpreter for t in expanded})
        abis = sorted({t.abi for t in expanded})
        platforms = sorted({t.platform for t in expanded})
        product = {Tag(i, a, p) for i in pythons for a in abis for p in platforms}
        if product != expanded:
            raise ValueError(
                f"tags {sorted(map(str, expanded))} are not a cartesian product and so "
                "cannot share one file name; build one wheel per tag instead"
            )
        return "-".join(".".join(part) for part in (pythons, abis, platforms))

    @property
    def filename(self) -> str:
        build = f"-{self.build_tag}" if self.build_tag else ""
        return f"{self.distribution}-{self.normalized_version}{build}-{self.compressed_tag}.whl"

    def dist_info_dir(self) -> str:
        return f"{self.distribution}-{self.normalized_version}.dist-info"

    def data_dir(self) -> str:
        return f"{self.distribution}-{self.normalized_version}.data"

    @property
    def is_purelib(self) -> bool:
        if self.purelib is not None:
            return self.purelib
        return all(t.platform == "any" for t in self.expanded_tags)

    # -- metadata files ---------------------------------------------------------------

    def metadata_text(self) -> str:
        lines = ["Metadata-Version: 2.1", f"Name: {self.name}", f"Version: {self.version}"]
        if self.summary:
            lines.append(f"Summary: {self.summary}")
        if self.requires_python:
            lines.append(f"Requires-Python: {self.requires_python}")
        lines += [f"Provides-Extra: {extra}" for extra in self.extras]
        lines += [f"Requires-Dist: {req}" for req in self.requires]
        return "\n".join(lines) + "\n"

    def wheel_text(self) -> str:
        lines = [
            "Wheel-Version: 1.0",
            f"Generator: {GENERATOR}",
            f"Root-Is-Purelib: {'true' if self.is_purelib else 'false'}",
        ]
        lines += [f"Tag: {tag}" for tag in self.expanded_tags]
        if self.build_tag:
            lines.append(f"Build: {self.build_tag}")
        return "\n".join(lines) + "\n"

    def entry_points_text(self) -> str | None:
        if not any(self.entry_points.values()):
            return None
        sections = []
        for group in sorted(self.entry_points):
            entries = self.entry_points[group]
            if entries:
                body = "".join(f"{name} = {entries[name]}\n" for name in sorted(entries))
                sections.append(f"[{group}]\n{body}")
        return "\n".join(sections)

    def members(self) -> list[tuple[str, bytes]]:
        """Every zip member except RECORD, in the order they are written."""
        payload = [(path, _as_bytes(content)) for path, content in self.files.items()]
        for scheme, files in self.data.items():
            payload += [(f"{self.data_dir()}/{scheme}/{p}", _as_bytes(c)) for p, c in files.items()]
        payload.sort()
        meta = [("METADATA", self.metadata_text()), ("WHEEL", self.wheel_text())]
        entry_points = self.entry_points_text()
        if entry_points is not None:
            meta.append(("entry_points.txt", entry_points))
        payload += [(f"{self.dist_info_dir()}/{name}", text.encode()) for name, text in meta]
        return payload


def build_wheel(spec: WheelSpec, dest_dir: Path) -> Path:
    """Write `spec` as a wheel into `dest_dir` (created if missing) and return its path.

    The file appears atomically (written beside it, then renamed), so a concurrent
    reader never sees half a wheel.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    members = spec.members()
    record_path = f"{spec.dist_info_dir()}/RECORD"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, content in members:
        writer.writerow([path, record_hash(content), str(len(content))])
    writer.writerow([record_path, "", ""])
    members.append((record_path, record.getvalue().encode()))

    target = dest_dir / spec.filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            for path, content in members:
                zf.writestr(_zip_info(path), content, compresslevel=_COMPRESS_LEVEL)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def build_sdist(
    name: str, version: str, dest_dir: Path, files: Mapping[str, FileContent] | None = None
) -> Path:
    """Write a minimal source distribution `{name}-{version}.tar.gz` and return its path.

    It has a PKG-INFO and a setuptools `pyproject.toml` but is meant never to be built:
    it lets tests check that a tool which must only install wheels refuses it. Like the
    wheels it is reproducible (fixed mtimes, owners and modes; no name or time in the
    gzip header).
    """
    spec = WheelSpec(name, version, files=files or {})
    top = f"{spec.distribution}-{spec.normalized_version}"
    members = {
        "PKG-INFO": spec.metadata_text().replace("Metadata-Version: 2.1", "Metadata-Version: 2.2"),
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ),
        **dict(spec.files),
    }
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{top}.tar.gz"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=dest_dir)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(members):
                content = _as_bytes(members[path])
                info = tarfile.TarInfo(f"{top}/{path}")
                info.size, info.mode, info.mtime = len(content), 0o644, 315532800
                tar.addfile(info, io.BytesIO(content))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def record_hash(content: bytes) -> str:
    """`sha256=<urlsafe base64, no padding>` as RECORD files spell it."""
    digest = hashlib.sha256(content).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_wheel(path: Path) -> list[str]:
    """Problems that would make an installer reject `path`; empty when it is valid.

    Independent of `build_wheel`'s code paths on purpose: it reads the archive back
    and checks it against the spec's rules, not against what the writer meant to do.
    """
    problems: list[str] = []
    try:
        name, version, _build, _tags = parse_wheel_filename(path.name)
    except ValueError as exc:
        return [f"bad file name: {exc}"]
    dist_info = f"{str(name).replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(path) as zf:
        if zf.testzip() is not None:
            problems.append("corrupt member")
        names = zf.namelist()
        if len(names) != len(set(names)):
            problems.append("duplicate members")
        for required in ("METADATA", "WHEEL", "RECORD"):
            if f"{dist_info}/{required}" not in names:
                problems.append(f"missing {dist_info}/{required}")
        if problems:
            return problems
        wheel = zf.read(f"{dist_info}/WHEEL").decode()
        if "Wheel-Version: 1.0" not in wheel.splitlines():
            problems.append("WHEEL lacks 'Wheel-Version: 1.0'")
        metadata = zf.read(f"{dist_info}/METADATA").decode().splitlines()
        meta_name = next((ln[6:] for ln in metadata if ln.startswith("Name: ")), "")
        if canonicalize_name(meta_name) != name:
            problems.append(f"METADATA Name {meta_name!r} does not match the file name")
        record_rows = list(csv.reader(io.StringIO(zf.read(f"{dist_info}/RECORD").decode())))
        recorded = {row[0]: row for row in record_rows}
        for member in names:
            if member.endswith("/"):
                continue
            row = recorded.get(member)
            if row is None:
                problems.append(f"{member} is not in RECORD")
            elif member != f"{dist_info}/RECORD":
                content = zf.read(member)
                if row[1] != record_hash(content) or row[2] != str(len(content)):
                    problems.append(f"{member}: RECORD hash or size does not match")
        problems += [f"RECORD lists missing {m}" for m in recorded if m not in names]
    return problems


def _as_bytes(content: FileContent) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def _path_problem(path: str) -> str | None:
    pure = PurePosixPath(path)
    if not path or path.endswith("/") or "\\" in path:
        return f"bad member path {path!r} (use a relative POSIX file path)"
    if pure.is_absolute() or ".." in pure.parts or "." in pure.parts:
        return f"member path {path!r} must stay inside the wheel"
    return None


def _zip_info(path: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
    info.create_system = _ZIP_UNIX
    info.compress_type = zipfile.ZIP_DEFLATED
    # Installers copy these bits: scripts and shared objects must stay executable.
    executable = "/scripts/" in path or path.endswith(".so") or ".so." in path
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    return info


# -- compiling C ----------------------------------------------------------------------


class CompileError(RuntimeError):
    """The C compiler failed; the message quotes its command and output."""


def c_compiler() -> str:
    """The C compiler to use: `$CC`, else `gcc`, else `cc` from PATH."""
    for candidate in (os.environ.get("CC"), "gcc", "cc"):
        if candidate and shutil.which(candidate.split()[0]):
            return candidate
    raise CompileError("no C compiler found (set CC or install gcc)")


def interpreter_tag() -> str:
    """`cpXY-cpXY` (or `cpXYt` for free-threaded builds) for the running interpreter."""
    version = f"{sys.version_info[0]}{sys.version_info[1]}"
    if sys.implementation.name != "cpython":
        raise CompileError(f"extension modules are for CPython only, not {sys.implementation.name}")
    threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"cp{version}-cp{version}{threaded}"


def extension_filename(module_name: str) -> str:
    """The file name CPython imports extension `module_name` from (last dotted part)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not isinstance(suffix, str):
        raise CompileError("this interpreter does not report an EXT_SUFFIX")
    return module_name.rpartition(".")[2] + suffix


def compile_shared_library(
    c_source: str,
    out_path: Path,
    *,
    soname: str | None = None,
    libraries: Sequence[str] = (),
    library_dirs: Sequence[Path] = (),
    include_dirs: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
) -> Path:
    """Compile `c_source` into the ELF shared library `out_path` and return it.

    `soname` becomes DT_SONAME, which is what a library linked against this one
    records as DT_NEEDED (so the consumer looks for `soname`, not the file's path).
    """
    args = [*_link_args(libraries, library_dirs), *_include_args(include_dirs), *extra_args]
    if soname:
        args.append(f"-Wl,-soname,{soname}")
    return _compile(c_source, out_path, args)


def compile_extension_module(
    c_source: str,
    module_name: str,
    out_dir: Path,
    *,
    libraries: Sequence[str] = (),
    library_dirs: Sequence[Path] = (),
    include_dirs: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
) -> Path:
    """Compile a CPython extension module into `out_dir`; returns the module's path.

    The file is named `{module_name}{EXT_SUFFIX}` for the running interpreter. Each of
    `libraries` is linked with `-l` (found through `library_dirs`) and so recorded as
    DT_NEEDED; no RPATH or RUNPATH is added, so finding those libraries at import time
    is up to whoever installs the module. libpython is not linked: on Linux an
    extension resolves Python's symbols from the interpreter that loads it.
    """
    paths = sysconfig.get_paths()
    py_includes = [Path(paths["include"]), Path(paths["platinclude"])]
    args = [
        *_include_args([*include_dirs, *dict.fromkeys(py_includes)]),
        *_link_args(libraries, library_dirs),
        *extra_args,
    ]
    return _compile(c_source, out_dir / extension_filename(module_name), args)


def _include_args(include_dirs: Sequence[Path]) -> list[str]:
    return [f"-I{d}" for d in include_dirs]


def _link_args(libraries: Sequence[str], library_dirs: Sequence[Path]) -> list[str]:
    # Library search paths are only used at link time; they are not recorded in the output.
    return [f"-L{d}" for d in library_dirs] + [f"-l{lib}" for lib in libraries]


def _compile(c_source: str, out_path: Path, args: Sequence[str]) -> Path:
    if not sys.platform.startswith("linux"):
        raise CompileError("the C helpers build ELF shared objects and run on Linux only")
    compiler = c_compiler().split()
    with tempfile.TemporaryDirectory(prefix="vl-cc-") as scratch:
        # Relative names inside a scratch directory: the only file name the object
        # records (its STT_FILE symbol) is then the same on every run.
        source = "source.c"
        Path(scratch, source).write_text(c_source, encoding="utf-8")
        command = [
            *compiler,
            "-O2",
            "-fPIC",
            "-shared",
            "-Wall",
            f"-ffile-prefix-map={scratch}=.",
            "-o",
            "out.so",
            source,
            *args,
        ]
        result = subprocess.run(
            command,
            cwd=scratch,
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
        if result.returncode != 0:
            raise CompileError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.strip()}"
            )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(scratch, "out.so"), out_path)
    out_path.chmod(0o755)
    return out_path
