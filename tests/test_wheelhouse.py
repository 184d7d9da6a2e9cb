"""The fixture wheelhouse: valid, installable offline, reproducible, and as documented.

These tests check the fixtures, not venvlayers: if they fail, every locking and
building test that uses the wheelhouse would fail for the wrong reason.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from uv import find_uv_bin

from tests.plugins.wheelhouse import Wheelhouse, build_wheelhouse, load_wheelhouse
from tests.support.wheels import (
    CompileError,
    WheelSpec,
    build_wheel,
    check_wheel,
    compile_extension_module,
    compile_shared_library,
)

LINUX = sys.platform.startswith("linux")
needs_linux = pytest.mark.skipif(not LINUX, reason="native fixture wheels are Linux-only")

PURE = ["vl-alpha", "vl-beta", "vl-gamma", "vl-delta", "vl-epsilon", "vl-zeta", "vl-tool"]
PLATFORM_ONLY = [
    "vl-linuxonly",
    "vl-maconly",
    "vl-winonly",
    "vl-newglibc",
    "vl-allplat",
    "vl-universal2",
]
NATIVE = ["vl-foolib", "vl-foolib-alt", "vl-fooext"]
LOCAL_BUILDS = ["vl-localfoo", "vl-localext"]  # tagged linux_<arch>


# -- running uv the way a hermetic test must ---------------------------------------------


@pytest.fixture(scope="module")
def uv_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Only PATH and HOME from the caller; no uv or pip configuration at all.

    This machine sets PIP_FIND_LINKS and has a pip.conf with extra indexes: uv ignores
    pip's settings, and UV_NO_CONFIG makes it ignore its own user/system config files
    too, so only the wheelhouse we pass can satisfy a requirement.
    """
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", str(tmp_path_factory.getbasetemp())),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        # A private cache: a wheel cached by an earlier run can never stand in for ours.
        "UV_CACHE_DIR": str(tmp_path_factory.mktemp("uv-cache")),
        "NO_COLOR": "1",
    }


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def uv(uv_env: dict[str, str]) -> Run:
    def run(
        *args: str | Path, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [find_uv_bin(), *map(str, args)],
            env=uv_env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"uv {' '.join(map(str, args))} failed:\n{result.stderr}")
        return result

    return run


def _compile(
    uv: Run, find_links: Path, requirements: Sequence[str], *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return uv(
        "pip",
        "compile",
        "-",
        "--no-index",
        "--find-links",
        find_links,
        "--python-version",
        f"{sys.version_info[0]}.{sys.version_info[1]}",
        "--no-header",
        "--no-annotate",
        "--quiet",
        *extra,
        stdin="\n".join(requirements) + "\n",
        check=check,
    )


def _pins(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    pins = {}
    for line in result.stdout.splitlines():
        name, _, version = line.strip().partition("==")
        pins[name] = version
    return pins


class Venv:
    """A fresh virtual environment of the test interpreter, filled with uv."""

    def __init__(self, root: Path, uv: Run, env: dict[str, str]) -> None:
        self.root, self._uv, self._env = root, uv, env
        uv("venv", "--python", sys.executable, root)
        self.python = root / "bin" / "python"
        self.site = Path(self.run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))"))

    def install(self, find_links: Path, *requirements: str) -> None:
        self._uv(
            "pip",
            "install",
            "--python",
            self.python,
            "--no-index",
            "--find-links",
            find_links,
            *requirements,
        )

    def _python(
        self, args: Sequence[str], env: dict[str, str] | None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            env={**self._env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        """The venv's python with `args`; its stripped stdout (fails the test on an error)."""
        result = self._python(args, env)
        if result.returncode != 0:
            pytest.fail(f"python {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout.strip()

    def run_failing(self, *args: str, env: dict[str, str] | None = None) -> str:
        """The venv's python with `args`, which must fail; its stderr."""
        result = self._python(args, env)
        assert result.returncode != 0, result.stdout
        return result.stderr

    def report(self, module: str) -> dict[str, dict[str, str]]:
        return dict(json.loads(self.run("-m", module)))


@pytest.fixture
def venv(tmp_path: Path, uv: Run, uv_env: dict[str, str]) -> Venv:
    return Venv(tmp_path / "venv", uv, uv_env)


# -- the catalogue itself ----------------------------------------------------------------


def test_catalogue_has_the_documented_packages(wheelhouse_catalogue: Wheelhouse) -> None:
    expected = {*PURE, "vl-pth", *PLATFORM_ONLY, "vl-sdistonly"}
    expected |= {*NATIVE, *LOCAL_BUILDS} if LINUX else set()
    assert set(wheelhouse_catalogue.names()) == expected
    assert wheelhouse_catalogue.versions("vl-alpha") == ["1.0", "1.1", "2.0"]
    assert wheelhouse_catalogue.versions("vl_Alpha", stage=0) == ["1.0", "1.1"]
    assert wheelhouse_catalogue.latest("vl-epsilon", stage=0) == "1.0"
    assert len(wheelhouse_catalogue.find("vl-allplat")) == 6
    with pytest.raises(KeyError, match="vl-nope"):
        wheelhouse_catalogue.latest("vl-nope")


def test_directories_hold_exactly_the_catalogue(
    wheelhouse: Path, wheelhouse_initial: Path, wheelhouse_catalogue: Wheelhouse
) -> None:
    files = wheelhouse_catalogue.files
    assert {p.name for p in wheelhouse.iterdir()} == {f.filename for f in files}
    initial = {f.filename for f in files if f.stage == 0}
    assert {p.name for p in wheelhouse_initial.iterdir()} == initial
    later = {f.filename for f in files if f.stage == 1}
    assert "vl_delta-1.0-py3-none-any.whl" in later
    assert "vl_alpha-2.0-py3-none-any.whl" in later


def test_every_wheel_is_valid_and_matches_the_catalogue(wheelhouse_catalogue: Wheelhouse) -> None:
    problems = {}
    for f in wheelhouse_catalogue.files:
        if f.kind == "sdist":
            continue
        found = check_wheel(f.path)
        name, version, _build, tags = parse_wheel_filename(f.filename)
        if (name, str(version)) != (f.name, f.version):
            found.append(f"file name says {name} {version}")
        if {str(t) for t in tags} != set(f.tags):
            found.append(f"file name tags {sorted(map(str, tags))} != {f.tags}")
        with zipfile.ZipFile(f.path) as zf:
            dist_info = f"{f.filename.split('-')[0]}-{f.version}.dist-info"
            metadata = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
            wheel = zf.read(f"{dist_info}/WHEEL").decode().splitlines()
        if metadata.get_all("Requires-Dist", []) != list(f.requires):
            found.append(f"Requires-Dist {metadata.get_all('Requires-Dist')} != {f.requires}")
        if sorted(line[5:] for line in wheel if line.startswith("Tag: ")) != sorted(f.tags):
            found.append("WHEEL Tag lines differ from the file name")
        if hashlib.sha256(f.path.read_bytes()).hexdigest() != f.sha256:
            found.append("sha256 differs from the catalogue")
        if found:
            problems[f.filename] = found
    assert problems == {}


def test_rebuilding_gives_byte_identical_files(
    tmp_path: Path, wheelhouse_catalogue: Wheelhouse
) -> None:
    rebuilt = build_wheelhouse(tmp_path / "again")
    assert {f.filename: f.sha256 for f in rebuilt.files} == {
        f.filename: f.sha256 for f in wheelhouse_catalogue.files
    }


def test_cache_is_reused_and_a_tampered_copy_rebuilt(tmp_path: Path) -> None:
    first = load_wheelhouse(tmp_path)
    manifest = first.root / "catalogue.json"
    stamp = manifest.stat().st_mtime_ns
    assert load_wheelhouse(tmp_path) == first
    assert manifest.stat().st_mtime_ns == stamp  # loaded, not rebuilt

    victim = first.find("vl-beta", "1.0")[0].path
    victim.chmod(0o644)
    victim.write_bytes(b"not a wheel")
    repaired = load_wheelhouse(tmp_path)
    assert repaired.find("vl-beta", "1.0")[0].path.read_bytes() != b"not a wheel"
    assert check_wheel(repaired.find("vl-beta", "1.0")[0].path) == []

    (repaired.path / "vl_extra-1.0-py3-none-any.whl").write_bytes(b"")
    assert (
        load_wheelhouse(tmp_path).path.joinpath("vl_extra-1.0-py3-none-any.whl").exists() is False
    )


def test_make_wheelhouse_copies_a_selection(
    make_wheelhouse: Callable[..., Path], wheelhouse: Path
) -> None:
    only = make_wheelhouse(names=["vl-alpha", "vl-beta"], stage=0)
    assert sorted(p.name for p in only.iterdir()) == [
        "vl_alpha-1.0-py3-none-any.whl",
        "vl_alpha-1.1-py3-none-any.whl",
        "vl_beta-1.0-py3-none-any.whl",
        "vl_beta-1.1-py3-none-any.whl",
    ]
    without = make_wheelhouse(exclude=["vl-gamma", "vl_alpha-2.0-py3-none-any.whl"])
    names = {p.name for p in without.iterdir()}
    assert "vl_alpha-1.1-py3-none-any.whl" in names
    assert not {"vl_gamma-1.0-py3-none-any.whl", "vl_alpha-2.0-py3-none-any.whl"} & names
    (without / "vl_alpha-1.1-py3-none-any.whl").unlink()  # private copy: the shared one stays
    assert (wheelhouse / "vl_alpha-1.1-py3-none-any.whl").is_file()


# -- resolution behaviour the locking tests rely on --------------------------------------


def test_initial_and_full_wheelhouses_resolve_differently(
    uv: Run, wheelhouse: Path, wheelhouse_initial: Path
) -> None:
    assert _pins(_compile(uv, wheelhouse_initial, ["vl-alpha"])) == {
        "vl-alpha": "1.1",
        "vl-beta": "1.1",
    }
    assert _pins(_compile(uv, wheelhouse, ["vl-alpha"])) == {"vl-alpha": "2.0", "vl-beta": "2.0"}
    # vl-gamma caps vl-alpha below the newest version
    assert _pins(_compile(uv, wheelhouse, ["vl-gamma"])) == {
        "vl-alpha": "1.1",
        "vl-beta": "2.0",
        "vl-gamma": "1.0",
    }


def test_vl_delta_conflicts_with_a_vl_beta_1_pin(uv: Run, wheelhouse: Path) -> None:
    result = _compile(uv, wheelhouse, ["vl-beta<2", "vl-delta"], check=False)
    assert result.returncode != 0
    assert "vl-beta==2.0" in result.stderr
    assert "vl-delta" in result.stderr


@pytest.mark.parametrize(
    ("requirement", "platform", "ok"),
    [
        ("vl-allplat", "x86_64-manylinux_2_28", True),
        ("vl-allplat", "aarch64-manylinux_2_28", True),
        ("vl-allplat", "aarch64-apple-darwin", True),
        ("vl-allplat", "x86_64-apple-darwin", True),
        ("vl-allplat", "x86_64-pc-windows-msvc", True),
        ("vl-allplat", "aarch64-pc-windows-msvc", True),
        ("vl-linuxonly", "x86_64-manylinux_2_28", True),
        ("vl-linuxonly", "aarch64-manylinux_2_17", True),
        ("vl-linuxonly", "aarch64-apple-darwin", False),
        ("vl-linuxonly", "x86_64-pc-windows-msvc", False),
        ("vl-maconly", "aarch64-apple-darwin", True),
        ("vl-maconly", "x86_64-apple-darwin", False),
        ("vl-maconly", "x86_64-manylinux_2_28", False),
        ("vl-winonly", "x86_64-pc-windows-msvc", True),
        ("vl-winonly", "x86_64-manylinux_2_28", False),
        ("vl-newglibc", "x86_64-manylinux_2_28", False),
        ("vl-newglibc", "x86_64-manylinux_2_34", True),
        ("vl-newglibc", "aarch64-manylinux_2_34", True),
    ],
)
def test_platform_wheels_resolve_only_where_they_fit(
    uv: Run, wheelhouse: Path, requirement: str, platform: str, ok: bool
) -> None:
    result = _compile(uv, wheelhouse, [requirement], "--python-platform", platform, check=False)
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert "no wheels with a matching platform tag" in result.stderr


def test_markers_and_extras(uv: Run, wheelhouse: Path) -> None:
    linux = _pins(
        _compile(uv, wheelhouse, ["vl-zeta"], "--python-platform", "x86_64-manylinux_2_28")
    )
    assert linux == {"vl-zeta": "1.0"}
    windows = _compile(uv, wheelhouse, ["vl-zeta"], "--python-platform", "x86_64-pc-windows-msvc")
    assert _pins(windows) == {"vl-zeta": "1.0", "vl-epsilon": "1.1"}
    assert _pins(_compile(uv, wheelhouse, ["vl-zeta[fast]"]))["vl-beta"] == "2.0"


def test_sdist_only_package_has_no_wheel(uv: Run, wheelhouse: Path) -> None:
    result = _compile(uv, wheelhouse, ["vl-sdistonly"], "--no-build", check=False)
    assert result.returncode != 0
    assert "vl-sdistonly" in result.stderr


# -- installing and running --------------------------------------------------------------


def test_pure_packages_install_with_hashes_and_report_their_files(
    venv: Venv, uv: Run, wheelhouse: Path, wheelhouse_catalogue: Wheelhouse, tmp_path: Path
) -> None:
    # --require-hashes makes uv check every wheel against the catalogue's sha256.
    pins = ["vl-gamma==1.0", "vl-alpha==1.1", "vl-beta==1.1"]
    lines = []
    for pin in pins:
        name, _, version = pin.partition("==")
        (wheel,) = wheelhouse_catalogue.find(name, version)
        lines.append(f"{pin} --hash=sha256:{wheel.sha256}")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    venv.install(wheelhouse, "--require-hashes", "-r", str(requirements))

    report = venv.report("vl_gamma")
    assert {m: r["version"] for m, r in report.items()} == {
        "vl_gamma": "1.0",
        "vl_alpha": "1.1",
        "vl_beta": "1.1",
    }
    for module, info in report.items():
        assert Path(info["file"]) == venv.site / module / "__init__.py"


def test_console_script_and_data_script_run(venv: Venv, wheelhouse: Path) -> None:
    venv.install(wheelhouse, "vl-tool")
    for command in ("vl-hello", "vl-hello-script"):
        result = subprocess.run(
            [str(venv.root / "bin" / command), "a", "b"],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": os.defpath},
        )
        output = json.loads(result.stdout)
        assert output["command"] == command
        assert output["args"] == ["a", "b"]
        assert Path(output["prefix"]) == venv.root
        assert Path(output["module"]) == venv.site / "vl_tool" / "__init__.py"
        assert Path(output["epsilon"]) == venv.site / "vl_epsilon" / "__init__.py"


def test_pth_file_is_processed_at_startup(venv: Venv, wheelhouse: Path) -> None:
    venv.install(wheelhouse, "vl-pth")
    assert venv.run("-c", "import sys; print('vl_pth_hook' in sys.modules)") == "True"
    added = venv.run("-c", "import vl_pth_added; print(vl_pth_added.__file__)")
    assert Path(added) == venv.site / "vl_pth_extra" / "vl_pth_added.py"
    # Without site processing neither effect happens: the .pth really is the cause.
    assert venv.run("-S", "-c", "import sys; print('vl_pth_hook' in sys.modules)") == "False"


@needs_linux
def test_extension_loads_libvlfoo_only_when_told_where(venv: Venv, wheelhouse: Path) -> None:
    venv.install(wheelhouse, "vl-fooext")  # pulls in vl-foolib
    code = "import vl_fooext; print(vl_fooext.answer(), vl_fooext.origin())"
    error = venv.run_failing("-c", code)
    assert "libvlfoo.so: cannot open shared object file" in error

    lib_dir = venv.site / "vl_foolib" / "lib"
    env = {"LD_LIBRARY_PATH": str(lib_dir)}
    assert venv.run("-c", code, env=env) == "42 vl-foolib"
    loaded = venv.run("-c", "import vl_fooext; print(vl_fooext.loaded_libraries())", env=env)
    assert loaded == str([str(lib_dir / "libvlfoo.so")])


@needs_linux
def test_alternative_libvlfoo_is_a_different_library(venv: Venv, wheelhouse: Path) -> None:
    venv.install(wheelhouse, "vl-fooext", "vl-foolib-alt")
    main_lib = venv.site / "vl_foolib" / "lib" / "libvlfoo.so"
    alt_lib = venv.site / "vl_foolib_alt" / "lib" / "libvlfoo.so"
    assert main_lib.read_bytes() != alt_lib.read_bytes()
    code = "import vl_fooext; print(vl_fooext.answer(), vl_fooext.origin())"
    assert venv.run("-c", code, env={"LD_LIBRARY_PATH": str(alt_lib.parent)}) == "43 vl-foolib-alt"


@needs_linux
@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_native_wheels_have_the_documented_elf_links(
    wheelhouse_catalogue: Wheelhouse, tmp_path: Path
) -> None:
    dynamic = {}
    for name in NATIVE:
        (wheel,) = wheelhouse_catalogue.find(name)
        with zipfile.ZipFile(wheel.path) as zf:
            for member in zf.namelist():
                if member.endswith(".so"):
                    zf.extract(member, tmp_path)
                    dynamic[member] = _readelf_dynamic(tmp_path / member)
    libs = [v for k, v in dynamic.items() if k.endswith("lib/libvlfoo.so")]
    assert len(libs) == 2
    for entries in libs:
        assert "(SONAME) Library soname: [libvlfoo.so]" in entries
    (ext,) = (v for k, v in dynamic.items() if k.startswith("vl_fooext/_fooext"))
    assert "(NEEDED) Shared library: [libvlfoo.so]" in ext
    assert not [e for e in ext if "RPATH" in e or "RUNPATH" in e]


@needs_linux
def test_local_build_wheels_are_tagged_as_pip_wheel_tags_them(
    wheelhouse_catalogue: Wheelhouse,
) -> None:
    py = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    arch = platform.machine()
    (lib,) = wheelhouse_catalogue.find("vl-localfoo")
    (ext,) = wheelhouse_catalogue.find("vl-localext")
    assert lib.tags == (f"{py}-abi3-linux_{arch}",)
    assert ext.tags == (f"{py}-{py}-linux_{arch}",)
    assert ext.requires == ("vl-localfoo>=1.0",)


def _readelf_dynamic(path: Path) -> list[str]:
    out = subprocess.run(
        ["readelf", "-d", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"},
    ).stdout
    # "0x... (NEEDED)   Shared library: [x]" -> "(NEEDED) Shared library: [x]"
    return [
        " ".join(line.split()[1:]) for line in out.splitlines() if line.strip().startswith("0x")
    ]


# -- the library's own rules ------------------------------------------------------------


def test_wheel_spec_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as info:
        WheelSpec(
            "-bad-",
            "not a version",
            files={"../escape.py": "", "/abs.py": ""},
            requires=["ok>=1", "broken ((("],
            tags=["py3-none-any", "nonsense"],
            data={"bin": {"x": ""}},
        )
    message = str(info.value)
    for fragment in (
        "invalid distribution name '-bad-'",
        "invalid version 'not a version'",
        "invalid requirement 'broken ((('",
        "invalid wheel tag 'nonsense'",
        "unknown data scheme 'bin'",
        "'../escape.py' must stay inside the wheel",
        "'/abs.py' must stay inside the wheel",
    ):
        assert fragment in message


def test_members_may_not_enter_the_writers_directories() -> None:
    with pytest.raises(ValueError, match="inside a directory the wheel writer owns"):
        WheelSpec("vl-x", "1.0", files={"vl_x-1.0.dist-info/RECORD": ""})
    with pytest.raises(ValueError, match="inside a directory the wheel writer owns"):
        WheelSpec("vl-x", "1.0", files={"vl_x-1.0.data/scripts/x": ""})


def test_tags_that_cannot_share_a_file_name_are_refused() -> None:
    with pytest.raises(ValueError, match="cartesian product"):
        WheelSpec("vl-x", "1", tags=["cp311-cp311-linux_x86_64", "py3-none-any"])
    spec = WheelSpec("Vl.X_y", "1.0-rc1", tags=["py2.py3-none-any"], build_tag="7")
    assert spec.filename == "vl_x_y-1.0rc1-7-py2.py3-none-any.whl"
    assert [str(t) for t in spec.expanded_tags] == ["py2-none-any", "py3-none-any"]


def test_built_wheel_layout_and_tamper_detection(tmp_path: Path) -> None:
    spec = WheelSpec(
        "vl-sample",
        "0.1",
        files={"vl_sample/__init__.py": "X = 1\n", "vl_sample/data.bin": b"\x00\x01"},
        entry_points={"console_scripts": {"vl-sample": "vl_sample:main"}},
        data={"scripts": {"vl-sample-sh": "#!/bin/sh\necho hi\n"}, "data": {"share/x.txt": "x"}},
        requires_python=">=3.11",
        extras=("more",),
        requires=['vl-alpha; extra == "more"'],
    )
    path = build_wheel(spec, tmp_path)
    assert path.name == "vl_sample-0.1-py3-none-any.whl"
    assert check_wheel(path) == []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[-1] == "vl_sample-0.1.dist-info/RECORD"
        assert "vl_sample-0.1.data/scripts/vl-sample-sh" in names
        assert zf.getinfo("vl_sample-0.1.data/scripts/vl-sample-sh").external_attr >> 16 == 0o100755
        assert {zf.getinfo(n).date_time for n in names} == {(1980, 1, 1, 0, 0, 0)}
        entry_points = zf.read("vl_sample-0.1.dist-info/entry_points.txt").decode()
        metadata = zf.read("vl_sample-0.1.dist-info/METADATA").decode()
        members = {n: zf.read(n) for n in names}
    assert entry_points == "[console_scripts]\nvl-sample = vl_sample:main\n"
    assert "Requires-Python: >=3.11\n" in metadata
    assert "Provides-Extra: more\n" in metadata

    members["vl_sample/__init__.py"] = b"X = 2\n"
    tampered = tmp_path / "tampered" / path.name
    tampered.parent.mkdir()
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    assert check_wheel(tampered) == ["vl_sample/__init__.py: RECORD hash or size does not match"]


@needs_linux
def test_compile_errors_quote_the_compiler(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="error"):
        compile_shared_library("this is not C;", tmp_path / "libbad.so")
    with pytest.raises(CompileError, match=r"no_such_header\.h"):
        compile_extension_module('#include "no_such_header.h"\n', "_bad", tmp_path)
