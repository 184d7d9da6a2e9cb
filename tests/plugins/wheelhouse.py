"""pytest plugin: a find-links directory of tiny, hermetic test packages.

Locking and building tests need packages whose versions, dependencies, platform tags
and native libraries they control, with no network. This plugin writes them (with
`tests.support.wheels`) once per session, or reuses an earlier session's copy from
pytest's cache directory when neither the generator code nor the interpreter changed.

Fixtures
--------
`wheelhouse` (session, `Path`)
    the find-links directory with every file of the catalogue below.
`wheelhouse_initial` (session, `Path`)
    the same without the stage-1 files (marked `*`): the index "before the newer
    versions were published", for stable-relock and `--upgrade-package` tests.
`wheelhouse_catalogue` (session, `Wheelhouse`)
    the catalogue as data: every file's name, version, requirements, tags, stage,
    purpose, sha256 and path; `versions()`, `latest()`, `find()` and `subset()`.
`make_wheelhouse` (function)
    `make_wheelhouse(stage=..., names=..., exclude=...)` copies a selection into a fresh
    directory that a test may change freely (e.g. delete a wheel).

Never modify `wheelhouse` or `wheelhouse_initial`: they are shared by the session and
cached between sessions (a changed cache is detected and rebuilt at the next session).

Catalogue (`*` = stage 1, i.e. not in `wheelhouse_initial`)
-----------------------------------------------------------

=============  ==============  ==========================  ===================================
package        versions        requires                    wheel tags
=============  ==============  ==========================  ===================================
vl-alpha       1.0, 1.1, 2.0*  1.1: vl-beta>=1.0           py3-none-any
                               2.0: vl-beta>=1.1
vl-beta        1.0, 1.1, 2.0*  -                           py3-none-any
vl-gamma       1.0             vl-alpha<2                  py3-none-any
vl-delta       1.0*            vl-beta==2.0                py3-none-any
vl-epsilon     1.0, 1.1*       -                           py3-none-any
vl-zeta        1.0             vl-epsilon>=1.0 (win32),    py3-none-any
                               [fast]: vl-beta>=1.0
vl-tool        1.0             vl-epsilon>=1.0             py3-none-any
vl-pth         1.0             -                           py3-none-any
vl-linuxonly   1.0             -                           py3-none-manylinux_2_17_A.manylinux2014_A
                                                           (A = x86_64, aarch64: two wheels)
vl-maconly     1.0             -                           py3-none-macosx_11_0_arm64
vl-winonly     1.0             -                           py3-none-win_amd64, py3-none-win_arm64
vl-newglibc    1.0             -                           py3-none-manylinux_2_34_{x86_64,aarch64}
vl-allplat     1.0             -                           cp39-abi3-P for six P (see below)
vl-universal2  1.0             -                           cp39-abi3-macosx_10_9_universal2,
                                                           cp39-abi3-manylinux_2_17_x86_64
vl-sdistonly   1.0             -                           none: vl_sdistonly-1.0.tar.gz only
vl-foolib      1.0             -                           py3-none-manylinux_2_17_<arch>
vl-foolib-alt  1.0             -                           py3-none-manylinux_2_17_<arch>
vl-fooext      1.0             vl-foolib>=1.0              cpXY-cpXY-manylinux_2_17_<arch>
vl-localfoo    1.0             -                           cpXY-abi3-linux_<arch>
vl-localext    1.0             vl-localfoo>=1.0            cpXY-cpXY-linux_<arch>
=============  ==============  ==========================  ===================================

What each is for:

- vl-alpha, vl-beta, vl-gamma: resolution across three layers; an upper layer reusing a
  lower layer's package; vl-gamma needs an older vl-alpha than the newest.
- vl-delta: cross-layer conflict with a lower layer that pins vl-beta 1.x.
- vl-epsilon: a requirement to add in stable-relock tests; vl-alpha/vl-beta 2.0 and
  vl-epsilon 1.1 are the "newer versions" that `--upgrade`/`--upgrade-package` reach.
- vl-zeta: a dependency behind a platform marker (dropped for non-Windows targets) and
  an extra.
- vl-tool: console script `vl-hello` and `#!python` data script `vl-hello-script`.
- vl-pth: `vl_pth.pth` with a path line and an import line.
- vl-linuxonly / vl-maconly / vl-winonly: missing-platform-wheel errors.
- vl-newglibc: only installable with `linux_target = "glibc@2.34"` or newer.
- vl-allplat: one lock with a different wheel per platform (manylinux_2_17 x86_64 and
  aarch64, macosx_11_0_arm64, macosx_10_12_x86_64, win_amd64, win_arm64).
- vl-universal2: macOS only as a `universal2` wheel (like pyzmq 27.1.0 and tornado
  6.5.2), which both macosx_arm64 and macosx_x86_64 accept.
- vl-sdistonly: no wheel at all, for "wheels only" errors.
- vl-foolib / vl-foolib-alt: each ships a different `libvlfoo.so` (answer 42 / 43)
  with the same SONAME, for cross-layer libraries and the same-name report.
- vl-fooext: a C extension linked to libvlfoo.so (DT_NEEDED) with no RPATH/RUNPATH.
- vl-localfoo / vl-localext: the same library (answer 44) and extension, tagged
  `linux_<arch>` as `pip wheel`/setuptools/meson-python tag a build made on the machine
  itself: accepted only from local wheel directories, for that one platform.

`<arch>` is this machine's (`platform.machine()`); the five native packages are only
built on Linux. Every package has one module named like the distribution
(`vl_alpha`, ...) with `DISTRIBUTION`, `__version__` and `report()`, which returns
`{module: {"version": ..., "file": ...}}` for the module and the modules of its
unconditional dependencies (imported at import time, so importing the top package
proves the whole chain resolves across layers); `python -m vl_alpha` prints that as
JSON. Platform-tagged packages also have `WHEEL_TAG`.

- `vl_tool.main()` (the `vl-hello` command) prints one JSON object: `command`, `module`
  (vl_tool's file), `epsilon` (vl_epsilon's file), `prefix`, `executable`, `args`.
- `vl_pth.pth` holds `vl_pth_extra` (so `import vl_pth_added` works only when the .pth
  was processed) and `import vl_pth_hook` (so `"vl_pth_hook" in sys.modules` at startup).
- `libvlfoo.so` (SONAME `libvlfoo.so`, needs only glibc 2.17) exports
  `int vlfoo_answer(void)` (42, or 43 in vl-foolib-alt) and `const char
  *vlfoo_origin(void)` (the distribution that shipped it); its header is
  `vl_foolib/include/vlfoo.h`. `vl_foolib.LIB_DIR`/`LIB_PATH` locate it; nothing loads
  it at import time.
- `vl_fooext.answer()` and `.origin()` call into libvlfoo through the extension
  `vl_fooext/_fooext{EXT_SUFFIX}` (DT_NEEDED `libvlfoo.so`, no RPATH/RUNPATH), so
  importing it fails unless the installer made libvlfoo findable;
  `vl_fooext.loaded_libraries()` lists the libvlfoo files actually mapped (from
  /proc/self/maps).

Recipes
-------
- three layers: runtime `vl-beta<2`, framework `vl-alpha<2` (reuses vl-beta from
  below), app `vl-gamma` (reuses vl-alpha and vl-beta from below).
- cross-layer conflict: a layer with `vl-beta<2`, a layer above it with `vl-delta`.
- stable relock: lock `vl-alpha` against `wheelhouse_initial` (alpha 1.1, beta 1.1),
  add `vl-epsilon` and relock against `wheelhouse`: alpha and beta must stay 1.1 although
  2.0 exists; `--upgrade-package vl-alpha` then moves alpha only (to 2.0; beta 1.1 still
  satisfies it).
- missing platform wheel: `vl-linuxonly` with `platforms` including `macosx_arm64` or
  `win_amd64`; `vl-newglibc` with the default `linux_target`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import wheels
from tests.support.wheels import WheelSpec

__all__ = [
    "CACHE_NAME",
    "CatalogueFile",
    "Wheelhouse",
    "build_wheelhouse",
    "cache_key",
    "load_wheelhouse",
]

CACHE_NAME = "venvlayers-wheelhouse"
_MANIFEST = "catalogue.json"
_MANIFEST_FORMAT = 1

# -- the catalogue as data -----------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueFile:
    """One file of the wheelhouse and what it is for."""

    filename: str
    name: str
    version: str
    kind: Literal["wheel", "sdist"]
    tags: tuple[str, ...]
    requires: tuple[str, ...]
    stage: int
    purpose: str
    sha256: str
    size: int
    path: Path = field(compare=False)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Wheelhouse:
    """The built catalogue: `path` (everything) and `initial_path` (stage 0 only)."""

    root: Path
    files: tuple[CatalogueFile, ...]

    @property
    def path(self) -> Path:
        return self.root / "all"

    @property
    def initial_path(self) -> Path:
        return self.root / "initial"

    def names(self) -> list[str]:
        return sorted({f.name for f in self.files})

    def find(
        self, name: str, version: str | None = None, *, stage: int | None = None
    ) -> list[CatalogueFile]:
        """The files of `name` (any spelling), optionally one version, up to `stage`."""
        wanted = canonicalize_name(name)
        return [
            f
            for f in self.files
            if canonicalize_name(f.name) == wanted
            and (version is None or Version(f.version) == Version(version))
            and (stage is None or f.stage <= stage)
        ]

    def versions(self, name: str, *, stage: int | None = None) -> list[str]:
        """The versions of `name`, oldest first."""
        return sorted({f.version for f in self.find(name, stage=stage)}, key=Version)

    def latest(self, name: str, *, stage: int | None = None) -> str:
        found = self.versions(name, stage=stage)
        if not found:
            raise KeyError(f"{name} is not in the wheelhouse catalogue")
        return found[-1]

    def subset(
        self,
        dest: Path,
        *,
        stage: int | None = None,
        names: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        select: Callable[[CatalogueFile], bool] | None = None,
    ) -> Path:
        """Copy a selection of files into `dest` (created) and return it.

        `names` keeps only those distributions; `exclude` drops distributions or exact
        file names; `select` is a final filter. Copies, not links, so a test may alter
        or delete them without touching the shared cache.
        """
        keep = None if names is None else {canonicalize_name(n) for n in names}
        dropped = set(exclude)
        dropped_names = {canonicalize_name(n) for n in dropped}
        dest.mkdir(parents=True, exist_ok=True)
        for f in self.files:
            if stage is not None and f.stage > stage:
                continue
            if keep is not None and canonicalize_name(f.name) not in keep:
                continue
            if f.filename in dropped or canonicalize_name(f.name) in dropped_names:
                continue
            if select is not None and not select(f):
                continue
            shutil.copyfile(f.path, dest / f.filename)
        return dest


# -- what the packages contain ---------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A file to build: a wheel, or (kind "sdist") an sdist of the spec's name and files."""

    spec: WheelSpec
    stage: int
    purpose: str
    kind: Literal["wheel", "sdist"] = "wheel"


def _module_name(dist: str) -> str:
    return canonicalize_name(dist).replace("-", "_")


def _package_files(
    dist: str, version: str, requires: Iterable[str] = (), extra_code: str = ""
) -> dict[str, str]:
    """`<module>/__init__.py` and `__main__.py` for a fixture distribution."""
    module = _module_name(dist)
    # Only unconditional dependencies are imported: a marker or extra may leave them out.
    deps = [_module_name(r.name) for r in map(Requirement, requires) if r.marker is None]
    imports = "".join(f"import {d}\n" for d in deps)
    init = (
        f'"""{dist} {version}: a venvlayers test fixture (tests/plugins/wheelhouse.py)."""\n\n'
        "from __future__ import annotations\n\n"
        f"{imports}\n"
        f"DISTRIBUTION = {dist!r}\n"
        f"__version__ = {version!r}\n"
        f"_DEPENDENCIES = ({''.join(f'{d}, ' for d in deps)})\n\n\n"
        "def report() -> dict[str, dict[str, str]]:\n"
        '    """Version and file of this module and its dependencies (which layer is which)."""\n'
        '    found = {__name__: {"version": __version__, "file": __file__}}\n'
        "    for dependency in _DEPENDENCIES:\n"
        "        found.update(dependency.report())\n"
        "    return found\n"
    )
    if extra_code:
        init += "\n\n" + extra_code.strip("\n") + "\n"
    main = f"import json\n\nimport {module}\n\nprint(json.dumps({module}.report(), indent=1))\n"
    return {f"{module}/__init__.py": init, f"{module}/__main__.py": main}


def _pure(
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    *,
    stage: int = 0,
    purpose: str,
    extras: tuple[str, ...] = (),
) -> _Entry:
    files = _package_files(name, version, requires)
    spec = WheelSpec(name, version, files=files, requires=requires, extras=extras)
    return _Entry(spec, stage, purpose)


def _platform_wheels(name: str, tag_sets: Iterable[tuple[str, ...]], purpose: str) -> list[_Entry]:
    """One wheel per tag set; the module says which wheel it came from."""
    entries = []
    for tags in tag_sets:
        extra = f"\nWHEEL_TAG = {'.'.join(tags)!r}\n"
        files = _package_files(name, "1.0", extra_code=extra)
        spec = WheelSpec(name, "1.0", files=files, tags=tags, purelib=False)
        entries.append(_Entry(spec, 0, purpose))
    return entries


def _pure_entries() -> list[_Entry]:
    return [
        _pure("vl-alpha", "1.0", purpose="oldest vl-alpha, no dependencies"),
        _pure("vl-alpha", "1.1", ("vl-beta>=1.0",), purpose="vl-alpha acceptable to vl-gamma"),
        _pure("vl-alpha", "2.0", ("vl-beta>=1.1",), stage=1, purpose="newer vl-alpha"),
        _pure("vl-beta", "1.0", purpose="oldest vl-beta"),
        _pure("vl-beta", "1.1", purpose="newest 1.x vl-beta"),
        _pure("vl-beta", "2.0", stage=1, purpose="newer vl-beta (needed by vl-delta)"),
        _pure("vl-gamma", "1.0", ("vl-alpha<2",), purpose="needs an older vl-alpha"),
        _pure("vl-delta", "1.0", ("vl-beta==2.0",), stage=1, purpose="conflicts with vl-beta<2"),
        _pure("vl-epsilon", "1.0", purpose="a requirement to add"),
        _pure("vl-epsilon", "1.1", stage=1, purpose="newer vl-epsilon"),
        _pure(
            "vl-zeta",
            "1.0",
            ('vl-epsilon>=1.0; sys_platform == "win32"', 'vl-beta>=1.0; extra == "fast"'),
            extras=("fast",),
            purpose="platform markers and an extra",
        ),
    ]


_TOOL_CODE = '''

def main() -> int:
    """The `vl-hello` command: where it runs from, as one line of JSON."""
    import json
    import os
    import sys

    import vl_epsilon

    print(
        json.dumps(
            {
                "command": os.path.basename(sys.argv[0]),
                "module": __file__,
                "epsilon": vl_epsilon.__file__,
                "prefix": sys.prefix,
                "executable": sys.executable,
                "args": sys.argv[1:],
            },
            sort_keys=True,
        )
    )
    return 0
'''

_SCRIPT = "#!python\nimport sys\n\nimport vl_tool\n\nsys.exit(vl_tool.main())\n"


def _tool_entry() -> _Entry:
    requires = ("vl-epsilon>=1.0",)
    spec = WheelSpec(
        "vl-tool",
        "1.0",
        files=_package_files("vl-tool", "1.0", requires, _TOOL_CODE),
        requires=requires,
        entry_points={"console_scripts": {"vl-hello": "vl_tool:main"}},
        data={"scripts": {"vl-hello-script": _SCRIPT}},
    )
    return _Entry(spec, 0, "console script vl-hello and #!python script vl-hello-script")


def _pth_entry() -> _Entry:
    files: dict[str, wheels.FileContent] = dict(_package_files("vl-pth", "1.0"))
    files["vl_pth.pth"] = "vl_pth_extra\nimport vl_pth_hook\n"
    files["vl_pth_hook.py"] = (
        '"""Imported by vl_pth.pth: in sys.modules at startup iff that .pth was processed."""\n'
    )
    files["vl_pth_extra/vl_pth_added.py"] = (
        '"""Importable only through the path line of vl_pth.pth."""\n'
    )
    spec = WheelSpec("vl-pth", "1.0", files=files)
    return _Entry(spec, 0, ".pth with a path line and an import line")


def _platform_entries() -> list[_Entry]:
    linux = [(f"py3-none-manylinux_2_17_{a}", f"py3-none-manylinux2014_{a}") for a in _LINUX_ARCHES]
    allplat = [
        *(f"manylinux_2_17_{a}" for a in _LINUX_ARCHES),
        "macosx_11_0_arm64",
        "macosx_10_12_x86_64",
        "win_amd64",
        "win_arm64",
    ]
    return [
        *_platform_wheels("vl-linuxonly", linux, "Linux wheels only"),
        *_platform_wheels("vl-maconly", [("py3-none-macosx_11_0_arm64",)], "macOS wheel only"),
        *_platform_wheels(
            "vl-winonly", [("py3-none-win_amd64",), ("py3-none-win_arm64",)], "Windows only"
        ),
        *_platform_wheels(
            "vl-newglibc",
            [(f"py3-none-manylinux_2_34_{a}",) for a in _LINUX_ARCHES],
            "needs glibc 2.34",
        ),
        *_platform_wheels(
            "vl-allplat", [(f"cp39-abi3-{p}",) for p in allplat], "a wheel for each platform"
        ),
        *_platform_wheels(
            "vl-universal2",
            [("cp39-abi3-macosx_10_9_universal2",), ("cp39-abi3-manylinux_2_17_x86_64",)],
            "one universal2 wheel for both Macs (as pyzmq and tornado ship)",
        ),
    ]


_LINUX_ARCHES = ("x86_64", "aarch64")

_VLFOO_H = """\
#ifndef VLFOO_H
#define VLFOO_H
int vlfoo_answer(void);
const char *vlfoo_origin(void);
#endif
"""

# Nothing beyond glibc 2.17 may be used here, or the manylinux_2_17 tag would be a lie
# (dladdr, for one, binds to GLIBC_2.34 when built on a newer system); the file the
# loader picked is found from /proc/self/maps on the Python side instead.
_VLFOO_C = """\
#include "vlfoo.h"

int vlfoo_answer(void) { return @ANSWER@; }

const char *vlfoo_origin(void) { return "@ORIGIN@"; }
"""

_FOOEXT_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "vlfoo.h"

static PyObject *answer(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLong(vlfoo_answer());
}

static PyObject *origin(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(vlfoo_origin());
}

static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, "vlfoo_answer() from libvlfoo.so"},
    {"origin", origin, METH_NOARGS, "vlfoo_origin(): the package that built libvlfoo.so"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fooext", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fooext(void) { return PyModule_Create(&module); }
"""

_FOOLIB_CODE = """
from pathlib import Path

LIB_DIR = Path(__file__).parent / "lib"
LIB_PATH = LIB_DIR / "libvlfoo.so"
"""

_FOOEXT_CODE = """
from ._fooext import answer, origin


def loaded_libraries() -> list[str]:
    \"\"\"Files named libvlfoo.so* that the dynamic loader mapped into this process.\"\"\"
    found = []
    with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            path = fields[5].strip() if len(fields) == 6 else ""
            if path.rpartition("/")[2].startswith("libvlfoo.so") and path not in found:
                found.append(path)
    return found


__all__ = ["answer", "loaded_libraries", "origin"]
"""


def _native_entries(scratch: Path) -> list[_Entry]:
    """libvlfoo twice (two variants with the same SONAME) and an extension using it."""
    plat = f"manylinux_2_17_{platform.machine()}"
    include = scratch / "include"
    include.mkdir()
    (include / "vlfoo.h").write_text(_VLFOO_H)
    entries = []
    libs: dict[str, Path] = {}
    for dist, answer in (("vl-foolib", 42), ("vl-foolib-alt", 43)):
        source = _VLFOO_C.replace("@ANSWER@", str(answer)).replace("@ORIGIN@", dist)
        lib = wheels.compile_shared_library(
            source, scratch / dist / "libvlfoo.so", soname="libvlfoo.so", include_dirs=[include]
        )
        libs[dist] = lib
        module = _module_name(dist)
        files: dict[str, wheels.FileContent] = dict(
            _package_files(dist, "1.0", extra_code=_FOOLIB_CODE)
        )
        files[f"{module}/lib/libvlfoo.so"] = lib.read_bytes()
        files[f"{module}/include/vlfoo.h"] = _VLFOO_H
        spec = WheelSpec(dist, "1.0", files=files, tags=[f"py3-none-{plat}"], purelib=False)
        entries.append(_Entry(spec, 0, f"ships libvlfoo.so (answer {answer})"))

    ext = wheels.compile_extension_module(
        _FOOEXT_C,
        "_fooext",
        scratch / "ext",
        libraries=["vlfoo"],
        library_dirs=[libs["vl-foolib"].parent],
        include_dirs=[include],
    )
    files = dict(_package_files("vl-fooext", "1.0", extra_code=_FOOEXT_CODE))
    files[f"vl_fooext/{ext.name}"] = ext.read_bytes()
    spec = WheelSpec(
        "vl-fooext",
        "1.0",
        files=files,
        requires=["vl-foolib>=1.0"],
        tags=[f"{wheels.interpreter_tag()}-{plat}"],
        purelib=False,
    )
    entries.append(_Entry(spec, 0, "extension module linked to libvlfoo.so, no RPATH"))
    entries += _local_build_entries(scratch, include, ext)
    return entries


def _local_build_entries(scratch: Path, include: Path, ext: Path) -> list[_Entry]:
    """The library/extension pair again, tagged as `pip wheel` tags a build made here."""
    local = f"linux_{platform.machine()}"
    major, minor = sys.version_info[:2]
    source = _VLFOO_C.replace("@ANSWER@", "44").replace("@ORIGIN@", "vl-localfoo")
    lib = wheels.compile_shared_library(
        source, scratch / "local" / "libvlfoo.so", soname="libvlfoo.so", include_dirs=[include]
    )
    files: dict[str, wheels.FileContent] = dict(
        _package_files("vl-localfoo", "1.0", extra_code=_FOOLIB_CODE)
    )
    files["vl_localfoo/lib/libvlfoo.so"] = lib.read_bytes()
    lib_spec = WheelSpec(
        "vl-localfoo", "1.0", files=files, tags=[f"cp{major}{minor}-abi3-{local}"], purelib=False
    )
    requires = ["vl-localfoo>=1.0"]
    files = dict(_package_files("vl-localext", "1.0", requires, extra_code=_FOOEXT_CODE))
    files[f"vl_localext/{ext.name}"] = ext.read_bytes()
    ext_spec = WheelSpec(
        "vl-localext",
        "1.0",
        files=files,
        requires=requires,
        tags=[f"{wheels.interpreter_tag()}-{local}"],
        purelib=False,
    )
    return [
        _Entry(lib_spec, 0, "local build (linux_<arch>) shipping libvlfoo.so (answer 44)"),
        _Entry(ext_spec, 0, "local build (linux_<arch>) of the extension linked to libvlfoo.so"),
    ]


def catalogue_entries(scratch: Path) -> list[_Entry]:
    """Every file of the catalogue; native ones are compiled in `scratch`."""
    entries = [*_pure_entries(), _tool_entry(), _pth_entry(), *_platform_entries()]
    sdist = WheelSpec("vl-sdistonly", "1.0", files=_package_files("vl-sdistonly", "1.0"))
    entries.append(_Entry(sdist, 0, "no wheel, only an sdist", kind="sdist"))
    if sys.platform.startswith("linux"):
        entries += _native_entries(scratch)
    return entries


# -- building and caching --------------------------------------------------------------------


def build_wheelhouse(root: Path) -> Wheelhouse:
    """Build the whole catalogue under `root` (`all/`, `initial/`, `catalogue.json`)."""
    all_dir, initial_dir = root / "all", root / "initial"
    all_dir.mkdir(parents=True)
    initial_dir.mkdir()
    files = []
    with tempfile.TemporaryDirectory(prefix="vl-wheelhouse-") as scratch:
        for entry in catalogue_entries(Path(scratch)):
            spec = entry.spec
            if entry.kind == "sdist":
                path = wheels.build_sdist(spec.name, spec.version, all_dir, spec.files)
                tags: tuple[str, ...] = ()
            else:
                path = wheels.build_wheel(spec, all_dir)
                tags = tuple(str(t) for t in spec.expanded_tags)
            content = path.read_bytes()
            files.append(
                CatalogueFile(
                    filename=path.name,
                    name=spec.name,
                    version=spec.version,
                    kind=entry.kind,
                    tags=tags,
                    requires=tuple(spec.requires),
                    stage=entry.stage,
                    purpose=entry.purpose,
                    sha256=hashlib.sha256(content).hexdigest(),
                    size=len(content),
                    path=path,
                )
            )
            if entry.stage == 0:
                shutil.copyfile(path, initial_dir / path.name)
    for path in [*all_dir.iterdir(), *initial_dir.iterdir()]:
        path.chmod(0o444)  # a reminder, for non-root users, that these are shared
    manifest = {
        "format": _MANIFEST_FORMAT,
        "key": cache_key(),
        "files": [{k: v for k, v in asdict(f).items() if k != "path"} for f in files],
    }
    # Written last: a directory with a manifest is complete.
    (root / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return Wheelhouse(root, tuple(files))


def cache_key() -> str:
    """Changes whenever the wheels could differ: generator code or target interpreter."""
    h = hashlib.sha256()
    for source in (Path(wheels.__file__), Path(__file__)):
        h.update(source.read_bytes())
    for fact in (
        sys.version,
        sys.implementation.cache_tag,
        str(sysconfig.get_config_var("EXT_SUFFIX")),
        platform.machine(),
        sys.platform,
    ):
        h.update(fact.encode() + b"\0")
    return h.hexdigest()[:16]


def load_wheelhouse(cache_root: Path) -> Wheelhouse:
    """The wheelhouse for this code and interpreter, built under `cache_root` if needed.

    Safe with concurrent sessions (e.g. pytest-xdist workers): each builds into a
    private directory and renames it into place; the loser of that race uses the
    winner's. A cached copy that no longer matches its manifest is rebuilt.
    """
    final = cache_root / cache_key()
    found = _load_verified(final)
    if found is not None:
        return found
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache_root))
    try:
        build_wheelhouse(building)
        # If another session finished first, the rename fails and its copy serves.
        with contextlib.suppress(OSError):
            building.rename(final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    found = _load_verified(final)
    if found is None:
        raise RuntimeError(f"wheelhouse in {final} is incomplete right after building it")
    return found


def _load_verified(root: Path) -> Wheelhouse | None:
    try:
        manifest = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != _MANIFEST_FORMAT:
        return None
    files = []
    for raw in manifest["files"]:
        entry = CatalogueFile(
            **{**raw, "tags": tuple(raw["tags"]), "requires": tuple(raw["requires"])},
            path=root / "all" / raw["filename"],
        )
        files.append(entry)
    expected_all = {f.filename for f in files}
    expected_initial = {f.filename for f in files if f.stage == 0}
    if _listing(root / "all") != expected_all or _listing(root / "initial") != expected_initial:
        return None
    # Hashing ~30 small files takes a millisecond and catches a test that rewrote a
    # shared wheel (the read-only bits do not stop root).
    copies = [(f, f.path) for f in files]
    copies += [(f, root / "initial" / f.filename) for f in files if f.stage == 0]
    for f, path in copies:
        content = path.read_bytes()
        if len(content) != f.size or hashlib.sha256(content).hexdigest() != f.sha256:
            return None
    return Wheelhouse(root, tuple(files))


def _listing(directory: Path) -> set[str]:
    try:
        return {p.name for p in directory.iterdir()}
    except OSError:
        return set()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheelhouse_catalogue(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Wheelhouse:
    """The built catalogue (see the module docstring), cached between sessions."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache_root = cache.mkdir(CACHE_NAME)
    else:  # the cacheprovider plugin is disabled (-p no:cacheprovider)
        cache_root = tmp_path_factory.mktemp(CACHE_NAME)
    return load_wheelhouse(cache_root)


@pytest.fixture(scope="session")
def wheelhouse(wheelhouse_catalogue: Wheelhouse) -> Path:
    """A find-links directory with every catalogue file. Do not modify it."""
    return wheelhouse_catalogue.path


@pytest.fixture(scope="session")
def wheelhouse_initial(wheelhouse_catalogue: Wheelhouse) -> Path:
    """A find-links directory without the stage-1 ("published later") files."""
    return wheelhouse_catalogue.initial_path


MakeWheelhouse = Callable[..., Path]


@pytest.fixture
def make_wheelhouse(wheelhouse_catalogue: Wheelhouse, tmp_path: Path) -> MakeWheelhouse:
    """Factory for a private find-links directory a test may change.

    Keyword arguments are those of `Wheelhouse.subset` (`stage`, `names`, `exclude`,
    `select`); each call returns a new directory under the test's `tmp_path`.
    """
    counter = iter(range(1_000_000))

    def make(
        *,
        stage: int | None = None,
        names: Collection[str] | None = None,
        exclude: Collection[str] = (),
        select: Callable[[CatalogueFile], bool] | None = None,
    ) -> Path:
        dest = tmp_path / f"wheelhouse-{next(counter)}"
        return wheelhouse_catalogue.subset(
            dest, stage=stage, names=names, exclude=exclude, select=select
        )

    return make


if __name__ == "__main__":
    # `python -m tests.plugins.wheelhouse DEST` builds the catalogue for manual use.
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "wheelhouse")
    built = build_wheelhouse(target)
    for f in built.files:
        print(f"{f.stage}  {f.filename:70}  {f.purpose}")
    print(f"find-links directory: {built.path.resolve()}", file=sys.stderr)
