"""The CLI shell and `show`: output, exit codes, verbosity."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from venvlayers import __version__
from venvlayers.cli import main

SPEC = """
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@3.11.7"

[[frameworks]]
name = "sci"
runtime = "cpython-3.11"
versioned = true

[[frameworks]]
name = "web"
runtime = "cpython-3.11"
platforms = []

[[applications]]
name = "tool"
frameworks = ["sci"]
launch_module = "tool.py"
requirement = ["x"]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "tool.py").write_text("print('tool')\n")
    path = tmp_path / "venvstacks.toml"
    path.write_text(textwrap.dedent(SPEC))
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"venvlayers {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "show" in capsys.readouterr().out


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "venvlayers", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert main(["show", "--no-such-option"]) == 2


def test_spec_error_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_show_tree(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(spec)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.splitlines()[0] == str(spec)
    assert "*framework-sci -> framework-sci@???" in out
    assert "*app-tool" in out
    assert "web" not in out  # disabled
    assert "did you mean 'requirements'?" in captured.err


def test_show_defaults_to_venvstacks_toml_in_cwd(
    spec: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(spec.parent)
    assert main(["show"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(spec)


def test_quiet_hides_warnings(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "show", str(spec)]) == 0
    assert capsys.readouterr().err == ""


def test_show_json_and_include(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "show", str(spec), "--json", "--include", "framework-*"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec_name"] == str(spec)
    assert [x["name"] for x in data["runtimes"]] == ["cpython-3.11"]
    assert [x["name"] for x in data["frameworks"]] == ["framework-sci"]
    assert [x["name"] for x in data["applications"]] == ["app-tool"]
    app = data["applications"][0]
    assert app["has_valid_lock"] is False
    assert [d["name"] for d in app["dependencies"]] == ["framework-sci", "cpython-3.11"]


def test_show_include_unmatched(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(spec), "--include", "nope"]) == 1
    assert main(["show", str(spec), "--include", "nope", "--allow-missing"]) == 0


def test_verbosity_flags_after_the_command(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(spec), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["show", str(spec), "-vv"]) == 0


def test_transfer_progress_uses_binary_units_and_shows_only_work_under_way() -> None:
    """Sizes in progress bars read like the tables (MiB); a transient display (push,
    pull, deploy) drops finished bars, so many small blobs do not fill the terminal."""
    from rich.progress import DownloadColumn

    from venvlayers.cli.common import RichReporter

    transfers = RichReporter(bytes_mode=True, transient=True)
    column = next(c for c in transfers._progress.columns if isinstance(c, DownloadColumn))
    assert column.binary_units
    transfers.begin("a", "upload a", total=10)
    transfers.begin("b", "upload b", total=3 << 20)
    transfers.advance("b", 1 << 20)
    transfers.begin("c", "compiling c")  # counted in nothing: no `0/? bytes`
    transfers.advance("a", 10)
    transfers.end("a")
    shown = {t.description: t.visible for t in transfers._progress.tasks}
    assert shown == {"upload a": False, "upload b": True, "compiling c": True}
    sizes = {t.description: str(column.render(t)) for t in transfers._progress.tasks}
    assert sizes["upload b"] == "1.0/3.0 MiB" and sizes["compiling c"] == ""
    kept = RichReporter()  # build and publish keep their finished bars
    kept.begin("a", "build a")
    kept.end("a")
    assert [t.visible for t in kept._progress.tasks] == [True]


def test_ctrl_c_is_one_line_and_exit_code_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from venvlayers import distribution

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(distribution, "push", interrupted)
    assert main(["push", str(tmp_path), "oci-layout:" + str(tmp_path / "layout")]) == 130
    captured = capsys.readouterr()
    assert captured.err.strip() == "interrupted" and captured.out == ""
