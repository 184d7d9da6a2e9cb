"""Options shared by several commands, defined once so each reads the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..archives.common import ArchiveFormat

__all__ = [
    "DEFAULT_SPEC",
    "AllowMissingOpt",
    "BuildDirOpt",
    "BytecodeOpt",
    "BytecodeShareOpt",
    "DryRunOpt",
    "ForceOpt",
    "FormatOpt",
    "IncludeOpt",
    "IndexOpt",
    "InsecureOpt",
    "JsonOpt",
    "LevelOpt",
    "LocalWheelsOpt",
    "NoCompileOpt",
    "OutputDirOpt",
    "PublishDependenciesOpt",
    "PublishDerivedOpt",
    "SignKeyOpt",
    "SpecArg",
    "TagOpt",
    "TrustedKeysOpt",
]

SpecArg = Annotated[
    Path,
    typer.Argument(
        help="The stack spec file.",
        show_default=True,
        dir_okay=False,
        metavar="SPEC",
    ),
]
DEFAULT_SPEC = Path("venvstacks.toml")
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="PATTERN",
        help="Only layers whose build name matches this fnmatch pattern (repeatable).",
    ),
]
AllowMissingOpt = Annotated[
    bool,
    typer.Option("--allow-missing", help="Do not fail when an --include pattern matches nothing."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
BuildDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--build-dir",
        metavar="DIR",
        help="Where layers are built (default: _build beside the spec).",
    ),
]


LocalWheelsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--local-wheels",
        metavar="DIR",
        help="A directory of wheels to use as find-links (repeatable).",
        file_okay=False,
    ),
]
IndexOpt = Annotated[
    bool,
    typer.Option(
        "--index/--no-index", help="Query package indexes (--no-index: only local wheels)."
    ),
]


OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Output directory (default: _artifacts or _export beside the spec).",
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only print what would be written.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo unchanged layers too.")]
FormatOpt = Annotated[
    ArchiveFormat,
    typer.Option("--format", help="Archive format (tar.zst is fastest; tar.xz as venvstacks)."),
]
LevelOpt = Annotated[
    int | None,
    typer.Option("--level", metavar="N", help="Compression level (default: per format)."),
]
TagOpt = Annotated[
    bool,
    typer.Option(
        "--tag-outputs",
        help="Name archives `<layer>-<platform>-<build>.<ext>` instead of `<layer>.<ext>`.",
    ),
]
BytecodeOpt = Annotated[
    bool,
    typer.Option(
        "--compile-bytecode",
        help="Ship checked-hash .pyc files for every module: a faster deploy (nothing left "
        "to compile) for about 1.4x larger archives.",
    ),
]
BytecodeShareOpt = Annotated[
    float,
    typer.Option(
        "--bytecode-share",
        metavar="SHARE",
        min=0.0,
        max=1.0,
        show_default="1/3",
        help="Otherwise ship the .pyc files of each layer's largest modules, which hold this "
        "share of its Python source (deploy compiles the rest; 0: ship none).",
    ),
]
NoCompileOpt = Annotated[
    bool,
    typer.Option(
        "--no-compile",
        help="Do not compile bytecode: faster, but each app's first start compiles what it "
        "imports (every start, where bytecode cannot be written).",
    ),
]


PublishDependenciesOpt = Annotated[
    bool, typer.Option("--publish-dependencies", help="With --include: the layers below too.")
]
PublishDerivedOpt = Annotated[
    bool, typer.Option("--publish-derived", help="With --include: the layers above too.")
]
SignKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--sign-key",
        metavar="KEY",
        dir_okay=False,
        help="Sign `venvstacks.json` with this OpenSSH private key (ed25519, ecdsa or rsa); "
        "a passphrase comes from $VENVLAYERS_SIGN_PASSPHRASE or a prompt.",
    ),
]
TrustedKeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--trusted-keys",
        metavar="FILE",
        dir_okay=False,
        help="An OpenSSH allowed_signers file: deploy only stacks signed by one of its "
        "keys, now and (remembered by the target) in later deploys.",
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Allow plain http:// to hosts other than loopback (registries, stack URLs).",
    ),
]
