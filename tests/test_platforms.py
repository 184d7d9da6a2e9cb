"""Wheel tags per target platform: ours must be the installers' own (packaging's).

packaging computes the tags of the machine it runs on. To get its answer for another
machine, each case below makes packaging believe it runs there (OS name, sysconfig
platform, glibc version, macOS version: the facts `packaging.tags.sys_tags()` reads)
and compares the full ordered list with `venvlayers.platforms.wheel_tags` for the
interpreter running the tests.
"""

from __future__ import annotations

import platform
import sys
import sysconfig

import packaging._manylinux
import packaging._musllinux
import pytest
from packaging.tags import Tag, parse_tag, sys_tags

from venvlayers.platforms import LinuxTarget, TargetPlatform, wheel_tags

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _packaging_tags(
    monkeypatch: pytest.MonkeyPatch,
    system: str,
    sysconfig_platform: str,
    *,
    glibc: tuple[int, int] | None = None,
    mac: tuple[str, str] | None = None,
) -> list[Tag]:
    """`packaging.tags.sys_tags()` as it would be on the machine described."""
    with monkeypatch.context() as m:
        m.setattr(platform, "system", lambda: system)
        m.setattr(sysconfig, "get_platform", lambda: sysconfig_platform)
        # glibc-based (not musl), with the given glibc, and no _manylinux override module
        m.setattr(packaging._musllinux, "_get_musl_version", lambda _exe: None)
        m.setattr(packaging._manylinux, "_have_compatible_abi", lambda _exe, _archs: True)
        m.setattr(packaging._manylinux, "_get_manylinux_module", lambda: None)
        if glibc is not None:
            m.setattr(packaging._manylinux, "_get_glibc_version", lambda: glibc)
        if mac is not None:
            version, arch = mac
            m.setattr(platform, "mac_ver", lambda: (version, ("", "", ""), arch))
        return list(sys_tags())


LINUX_CASES = [
    (TargetPlatform.LINUX_X86_64, "linux-x86_64", None),  # the default glibc
    (TargetPlatform.LINUX_X86_64, "linux-x86_64", (2, 17)),
    (TargetPlatform.LINUX_X86_64, "linux-x86_64", (2, 5)),
    (TargetPlatform.LINUX_X86_64, "linux-x86_64", (2, 34)),
    (TargetPlatform.LINUX_AARCH64, "linux-aarch64", None),
    (TargetPlatform.LINUX_AARCH64, "linux-aarch64", (2, 17)),
    (TargetPlatform.LINUX_AARCH64, "linux-aarch64", (2, 39)),
]


@pytest.mark.parametrize(("target", "sysconfig_platform", "glibc"), LINUX_CASES)
def test_linux_tags_are_packagings(
    monkeypatch: pytest.MonkeyPatch,
    target: TargetPlatform,
    sysconfig_platform: str,
    glibc: tuple[int, int] | None,
) -> None:
    linux_target = LinuxTarget("glibc", glibc)
    expected = _packaging_tags(monkeypatch, "Linux", sysconfig_platform, glibc=linux_target.glibc)
    # a machine's own tags include linux_<arch>: our list for local builds
    assert wheel_tags(target, PY, linux_target=linux_target, local_build=True) == expected
    # for wheels from an index, the same list without linux_<arch>
    portable = [t for t in expected if not t.platform.startswith("linux_")]
    assert wheel_tags(target, PY, linux_target=linux_target) == portable


MAC_CASES = [
    (TargetPlatform.MACOS_ARM64, None, "13.0"),  # the default target
    (TargetPlatform.MACOS_ARM64, (11, 0), "11.0"),
    (TargetPlatform.MACOS_ARM64, (14, 0), "14.0"),
    # arm64 Macs start at macOS 11: an older (Intel) target counts as 11
    (TargetPlatform.MACOS_ARM64, (10, 13), "11.0"),
    (TargetPlatform.MACOS_X86_64, None, "13.0"),
    (TargetPlatform.MACOS_X86_64, (10, 13), "10.13"),
    (TargetPlatform.MACOS_X86_64, (10, 9), "10.9"),
    (TargetPlatform.MACOS_X86_64, (12, 0), "12.0"),
]


@pytest.mark.parametrize(("target", "macosx_target", "mac_version"), MAC_CASES)
def test_macos_tags_are_packagings(
    monkeypatch: pytest.MonkeyPatch,
    target: TargetPlatform,
    macosx_target: tuple[int, int] | None,
    mac_version: str,
) -> None:
    expected = _packaging_tags(
        monkeypatch, "Darwin", f"macosx-{mac_version}-{target.arch}", mac=(mac_version, target.arch)
    )
    assert wheel_tags(target, PY, macosx_target=macosx_target) == expected
    # local builds are a Linux matter
    assert wheel_tags(target, PY, macosx_target=macosx_target, local_build=True) == expected


@pytest.mark.parametrize(
    ("target", "sysconfig_platform"),
    [(TargetPlatform.WIN_AMD64, "win-amd64"), (TargetPlatform.WIN_ARM64, "win-arm64")],
)
def test_windows_tags_are_packagings(
    monkeypatch: pytest.MonkeyPatch, target: TargetPlatform, sysconfig_platform: str
) -> None:
    expected = _packaging_tags(monkeypatch, "Windows", sysconfig_platform)
    assert wheel_tags(target, PY) == expected


def test_every_platform_has_a_case() -> None:
    covered = {c[0] for c in LINUX_CASES} | {c[0] for c in MAC_CASES}
    covered |= {TargetPlatform.WIN_AMD64, TargetPlatform.WIN_ARM64}
    assert covered == set(TargetPlatform)


def _accepts(filename_tags: str, target: TargetPlatform, **kwargs: object) -> bool:
    tags = set(wheel_tags(target, "3.11", **kwargs))  # type: ignore[arg-type]
    return bool(parse_tag(filename_tags) & tags)


@pytest.mark.parametrize("target", [TargetPlatform.MACOS_ARM64, TargetPlatform.MACOS_X86_64])
def test_universal2_wheels_fit_both_macs(target: TargetPlatform) -> None:
    # pyzmq 27.1.0 and tornado 6.5.2, which JupyterLab needs, ship only these for macOS
    assert _accepts("cp311-cp311-macosx_10_15_universal2", target)
    assert _accepts("cp39-abi3-macosx_10_9_universal2", target)
    assert _accepts("cp39-abi3-macosx_10_9_universal2", target, macosx_target=(11, 0))


def test_the_rules_installers_apply() -> None:
    x86, arm = TargetPlatform.LINUX_X86_64, TargetPlatform.LINUX_AARCH64
    assert _accepts("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", x86)
    assert _accepts("cp311-cp311-manylinux1_x86_64", x86)
    assert not _accepts("cp311-cp311-manylinux_2_34_x86_64", x86)  # default glibc 2.28
    assert _accepts(
        "cp311-cp311-manylinux_2_34_x86_64", x86, linux_target=LinuxTarget("glibc", (2, 34))
    )
    assert not _accepts("cp311-cp311-manylinux_2_17_x86_64", arm)
    assert not _accepts("cp311-cp311-musllinux_1_2_x86_64", x86)
    assert not _accepts("cp312-cp312-manylinux_2_17_x86_64", x86)  # another Python
    assert _accepts("cp39-abi3-manylinux_2_17_x86_64", x86)
    assert not _accepts("cp311-cp311-linux_x86_64", x86)  # only from local wheel dirs
    assert _accepts("cp311-cp311-linux_x86_64", x86, local_build=True)
    assert not _accepts("cp311-cp311-linux_x86_64", arm, local_build=True)
    assert not _accepts("cp311-cp311-macosx_11_0_arm64", TargetPlatform.MACOS_X86_64)
    assert _accepts("cp311-cp311-macosx_11_0_arm64", TargetPlatform.MACOS_ARM64)
    assert not _accepts("cp311-cp311-macosx_14_0_arm64", TargetPlatform.MACOS_ARM64)  # > 13.0
    assert _accepts("cp311-cp311-win_amd64", TargetPlatform.WIN_AMD64)
    assert not _accepts("cp311-cp311-win_amd64", TargetPlatform.WIN_ARM64)
    assert _accepts("py3-none-any", TargetPlatform.WIN_ARM64)


def test_other_python_versions() -> None:
    tags = wheel_tags(TargetPlatform.LINUX_X86_64, "3.12.1")
    assert tags[0] == Tag("cp312", "cp312", "manylinux_2_28_x86_64")
    assert Tag("cp312", "abi3", "manylinux_2_17_x86_64") in tags
    assert Tag("cp311", "abi3", "manylinux_2_17_x86_64") in tags
    assert Tag("cp311", "cp311", "manylinux_2_17_x86_64") not in tags
    assert tags[-1] == Tag("py30", "none", "any")
    assert Tag("cp312", "none", "any") in tags
