"""Target platforms: names, marker environments, uv and python-build-standalone names.

Platform names are the six venvstacks uses (basic wheel platform tags without an OS
version); the glibc and macOS versions a layer targets are separate layer settings.
"""

from __future__ import annotations

import platform as _platform
import sys
import sysconfig
from dataclasses import dataclass
from enum import StrEnum

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms

__all__ = [
    "DEFAULT_GLIBC",
    "DEFAULT_MACOSX",
    "LinuxTarget",
    "TargetPlatform",
    "build_platform",
    "parse_linux_target",
    "parse_macosx_target",
    "wheel_tags",
]

# uv's `*-unknown-linux-gnu` and `*-apple-darwin` platforms stand for these versions;
# naming them explicitly keeps the wheel check and the resolver in agreement.
DEFAULT_GLIBC = (2, 28)
DEFAULT_MACOSX = (13, 0)

_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


class TargetPlatform(StrEnum):
    """A deployment platform a layer can be locked, built and published for."""

    LINUX_X86_64 = "linux_x86_64"
    LINUX_AARCH64 = "linux_aarch64"
    MACOS_ARM64 = "macosx_arm64"
    MACOS_X86_64 = "macosx_x86_64"
    WIN_AMD64 = "win_amd64"
    WIN_ARM64 = "win_arm64"

    @classmethod
    def all(cls) -> list[TargetPlatform]:
        return sorted(cls)

    @property
    def os(self) -> str:
        """`linux`, `macosx` or `win`."""
        return self.value.partition("_")[0]

    @property
    def arch(self) -> str:
        """The CPU as the tag spells it: `x86_64`, `aarch64`, `arm64`, `amd64`."""
        return self.value.partition("_")[2]

    @property
    def cpu(self) -> str:
        """The CPU as toolchains spell it: `x86_64` or `aarch64`."""
        return _ARCH_ALIASES.get(self.arch, self.arch)

    @property
    def pbs_triple(self) -> str:
        """The target triple python-build-standalone names its archives with."""
        suffix = {
            "linux": "unknown-linux-gnu",
            "macosx": "apple-darwin",
            "win": "pc-windows-msvc",
        }[self.os]
        return f"{self.cpu}-{suffix}"

    def marker_environment(
        self, py_version: str, implementation: str = "cpython"
    ) -> dict[str, str]:
        """PEP 508 marker values on this platform (those that do not depend on the OS release)."""
        impl_names = {"cpython": "CPython", "pypy": "PyPy"}
        env = {
            "implementation_name": implementation,
            "platform_python_implementation": impl_names.get(implementation, implementation),
            "python_version": ".".join(py_version.split(".")[:2]),
            "python_full_version": py_version,
            "implementation_version": py_version if implementation == "cpython" else "",
        }
        env.update(
            {
                "linux": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux"},
                "macosx": {
                    "os_name": "posix",
                    "sys_platform": "darwin",
                    "platform_system": "Darwin",
                },
                "win": {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows"},
            }[self.os]
        )
        machine = {"amd64": "AMD64", "arm64": "arm64" if self.os == "macosx" else "ARM64"}
        env["platform_machine"] = machine.get(self.arch, self.arch)
        return env

    def platform_tags(
        self,
        linux_target: LinuxTarget | None = None,
        macosx_target: tuple[int, int] | None = None,
        *,
        local_build: bool = False,
    ) -> list[str]:
        """Wheel platform tags that install on this platform at the given OS targets.

        Most specific first; `any` is not included (pure wheels fit everywhere). The
        rules are the installers' own: `packaging.tags.mac_platforms` for macOS, PEP 600
        (as `packaging._manylinux` applies it to the running machine) for Linux.
        `local_build` adds `linux_<arch>`, the tag of a wheel built on this kind of
        machine and portable only to machines like it (Linux only).
        """
        if self.os == "linux":
            tags = _manylinux_platforms((linux_target or LinuxTarget()).glibc, self.cpu)
            # first, as installers rank it: a wheel built here is the most specific
            return [f"linux_{self.cpu}", *tags] if local_build else tags
        if self.os == "macosx":
            target = macosx_target or DEFAULT_MACOSX
            if self.arch == "arm64":
                # arm64 Macs run macOS 11 or later: an older deployment target is
                # that of the Intel build, and must not refuse macosx_11_0_arm64 wheels
                target = max(target, (11, 0))
            return list(mac_platforms(target, self.arch))
        return [self.value]


def wheel_tags(
    platform: TargetPlatform,
    py_version: str,
    implementation: str = "cpython",
    linux_target: LinuxTarget | None = None,
    macosx_target: tuple[int, int] | None = None,
    *,
    local_build: bool = False,
) -> list[Tag]:
    """Every wheel tag an installer accepts for this interpreter on `platform`, best first.

    The one wheel-compatibility computation of venvlayers (locking filters wheels with
    it, building picks the wheel to install with it): `packaging.tags.cpython_tags`
    and `compatible_tags` over `TargetPlatform.platform_tags`, i.e. what
    `packaging.tags.sys_tags()` gives on such a machine. `py_version` is `X.Y` or
    `X.Y.Z`. PyPy ABI tags (`pypy311_pp73`) depend on the interpreter build, so for
    PyPy only the ABI-independent tags are listed. `local_build`: also `linux_<arch>`
    (see `platform_tags`).
    """
    major, minor = (int(x) for x in py_version.split(".")[:2])
    plats = platform.platform_tags(linux_target, macosx_target, local_build=local_build)
    if implementation == "cpython":
        interpreter = f"cp{major}{minor}"
        found = list(cpython_tags((major, minor), [interpreter], plats))
    else:
        interpreter = f"pp{major}{minor}"
        found = []
    found += compatible_tags((major, minor), interpreter, plats)
    return found


# The oldest glibc with manylinux wheels: 2.5 on x86 (manylinux1), 2.17 elsewhere
# (manylinux2014 introduced the other architectures); PEP 600 and packaging agree.
_OLDEST_GLIBC_MINOR = {"x86_64": 5, "i686": 5}
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def _manylinux_platforms(glibc: tuple[int, int], arch: str) -> list[str]:
    """PEP 600: a `manylinux_X_Y` wheel installs on glibc X.Z for every Z >= Y.

    packaging computes this list only for the running machine (its `_manylinux` module
    is private and asks the interpreter for its glibc), so the same rule is applied here
    to a target glibc, with the legacy aliases placed where packaging places them.
    """
    # glibc keeps compatibility across major versions too; packaging assumes 50 minor
    # releases for an earlier major version, and so does this
    ranges = [(glibc[0], glibc[1])] + [(major, 50) for major in range(glibc[0] - 1, 1, -1)]
    tags: list[str] = []
    for major, top in ranges:
        oldest = _OLDEST_GLIBC_MINOR.get(arch, 17) if major == 2 else 0
        for minor in range(top, oldest - 1, -1):
            tags.append(f"manylinux_{major}_{minor}_{arch}")
            legacy = _LEGACY_MANYLINUX.get((major, minor))
            if legacy:
                tags.append(f"{legacy}_{arch}")
    return tags


@dataclass(frozen=True)
class LinuxTarget:
    """A layer's `linux_target`: the C library it is built for (`glibc` or `glibc@X.Y`)."""

    variant: str = "glibc"
    version: tuple[int, int] | None = None

    @property
    def glibc(self) -> tuple[int, int]:
        return self.version or DEFAULT_GLIBC

    def __str__(self) -> str:
        if self.version is None:
            return self.variant
        return f"{self.variant}@{self.version[0]}.{self.version[1]}"


def parse_linux_target(text: str) -> LinuxTarget:
    """Parse `glibc` or `glibc@X.Y`; raises ValueError with the accepted forms."""
    variant, has_at, version = text.partition("@")
    if variant != "glibc":
        raise ValueError(f"must be 'glibc' or 'glibc@X.Y' (musl is not supported), not {text!r}")
    if not has_at:
        return LinuxTarget(variant)
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"glibc version must look like 'glibc@2.28', not {text!r}")
    major, minor = int(parts[0]), int(parts[1])
    if (major, minor) < (2, 5):
        raise ValueError(f"glibc versions before 2.5 have no manylinux wheels ({text!r})")
    return LinuxTarget(variant, (major, minor))


def parse_macosx_target(text: str) -> tuple[int, int]:
    """Parse a macOS deployment target such as `11`, `11.0` or `10.13`."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"must look like '11.0' or '10.13', not {text!r}")
    major = int(parts[0])
    minor = int(parts[1]) if len(parts) == 2 else 0
    if major < 10:
        raise ValueError(f"macOS versions before 10 are not supported ({text!r})")
    return (major, minor)


def suggest_platform(text: str) -> str | None:
    """The platform a mistyped name most likely means (`linux_amd64` -> `linux_x86_64`)."""
    import difflib

    os_part, _, arch = text.lower().replace("-", "_").partition("_")
    os_part = {"darwin": "macosx", "macos": "macosx", "windows": "win", "win32": "win"}.get(
        os_part, os_part
    )
    spellings = {
        "linux": {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"},
        "macosx": {"aarch64": "arm64", "amd64": "x86_64", "x64": "x86_64"},
        "win": {"x86_64": "amd64", "x64": "amd64", "aarch64": "arm64"},
    }
    arch = spellings.get(os_part, {}).get(arch, arch)
    candidate = f"{os_part}_{arch}"
    names = [str(p) for p in TargetPlatform.all()]
    if candidate in names:
        return candidate
    close = difflib.get_close_matches(text, names, n=1)
    return close[0] if close else None


def build_platform() -> TargetPlatform:
    """The target platform of the machine we run on."""
    if sys.platform.startswith("linux"):
        os_name = "linux"
    elif sys.platform == "darwin":
        os_name = "macosx"
    elif sys.platform == "win32":
        os_name = "win"
    else:
        raise ValueError(f"unsupported build platform {sys.platform!r}")
    machine = _platform.machine().lower() or sysconfig.get_platform().rpartition("-")[2]
    if os_name == "win":
        arch = "arm64" if machine in ("arm64", "aarch64") else "amd64"
    elif os_name == "macosx":
        arch = "arm64" if machine in ("arm64", "aarch64") else "x86_64"
    else:
        arch = "aarch64" if machine in ("arm64", "aarch64") else "x86_64"
    return TargetPlatform(f"{os_name}_{arch}")
