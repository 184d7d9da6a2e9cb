"""Files written into layer environments: relocatable scripts, RECORD, sitecustomize."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from venvlayers.building.envfiles import refresh_records, relocatable_scripts, sitecustomize_text


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _layer(root: Path) -> tuple[Path, Path]:
    bin_dir = root / "bin"
    site = root / "lib" / "python3.11" / "site-packages"
    bin_dir.mkdir(parents=True)
    site.mkdir(parents=True)
    (bin_dir / "python3.11").symlink_to(sys.executable)
    script = bin_dir / "tool"
    body = b"import sys\nprint('tool', sys.argv[1:])\n"
    script.write_bytes(f"#!{root.resolve()}/bin/python3.11\n".encode() + body)
    script.chmod(0o755)
    dist = site / "tool-1.0.dist-info"
    dist.mkdir()
    data = script.read_bytes()
    (dist / "RECORD").write_text(
        f"../../../bin/tool,sha256={_record_hash(data)},{len(data)}\ntool-1.0.dist-info/RECORD,,\n"
    )
    return bin_dir, site


def test_scripts_and_records_become_independent_of_the_build_dir(tmp_path: Path) -> None:
    records = []
    for name in ("one", "two-deeper/x"):
        root = tmp_path / name
        bin_dir, site = _layer(root)
        changed = relocatable_scripts(bin_dir, root)
        assert changed == [bin_dir / "tool"]
        refresh_records(site, changed)
        records.append((site / "tool-1.0.dist-info/RECORD").read_text())
        proc = subprocess.run([bin_dir / "tool", "a"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "tool ['a']"
        data = (bin_dir / "tool").read_bytes()
        assert str(root) not in data.decode()
        assert f"sha256={_record_hash(data)},{len(data)}" in records[-1]
        assert os.access(bin_dir / "tool", os.X_OK)
    assert records[0] == records[1]
    # idempotent: nothing left to change
    assert relocatable_scripts(tmp_path / "one" / "bin", tmp_path / "one") == []


def test_sitecustomize_paths_are_relative(tmp_path: Path) -> None:
    text = sitecustomize_text(
        ["../rt/lib/python3.11/site-packages"], "lib/python3.11/site-packages"
    )
    assert '"../../../../rt/lib/python3.11/site-packages"' in text
    compile(text, "sitecustomize.py", "exec")
