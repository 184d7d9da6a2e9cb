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

__all__ = [
    "DEFAULT_GLIBC",
    "DEFAULT_MACOSX",
    "LinuxTarget",
    "TargetPlatform",
    "build_platform",
    "parse_linux_target",
    "parse_macosx_target",
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
    ) -> list[str]:
        """Wheel platform tags that install on this platform at the given OS targets.

        Most specific first; `any` is not included (pure wheels fit everywhere).
        """
        if self.os == "linux":
            major, minor = (linux_target or LinuxTarget()).glibc
            tags = [f"manylinux_{major}_{m}_{self.cpu}" for m in range(minor, -1, -1)]
            legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
            for (lmaj, lmin), name in legacy.items():
                if (major, minor) >= (lmaj, lmin):
                    tags.append(f"{name}_{self.cpu}")
            return tags
        if self.os == "macosx":
            target = macosx_target or DEFAULT_MACOSX
            arches = ["arm64"] if self.arch == "arm64" else ["x86_64", "intel"]
            arches += ["universal2", "universal"] if self.arch != "arm64" else ["universal2"]
            versions: list[tuple[int, int]] = []
            for major in range(target[0], 10, -1):
                versions.append((major, 0))
            if self.arch != "arm64":
                top = target[1] if target[0] == 10 else 16
                versions += [(10, m) for m in range(top, -1, -1)]
            return [f"macosx_{v[0]}_{v[1]}_{a}" for v in versions for a in arches]
        return [self.value]


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
