"""Every command and sub-command answers --help quickly, without importing the heavy stack."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from tools.cli import app


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: object, prefix: list[str]) -> None:
        paths.append(prefix)
        # typer vendors click; duck-type groups by their ``commands`` mapping.
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_every_command_has_help() -> None:
    runner = CliRunner()
    paths = _all_command_paths()
    names = {" ".join(p) for p in paths}
    assert {"generate", "import", "pipeline run", "api", "demo", "users create", "users device-key"} <= names
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_help_does_not_import_the_heavy_stack() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from tools.cli import app;"
        "CliRunner().invoke(app, ['--help']);"
        "heavy = [m for m in ('dagster', 'pyod', 'great_expectations', 'statsforecast', 'duckdb')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_rotate_device_key_issues_a_new_key_and_retires_the_old(settings) -> None:  # type: ignore[no-untyped-def]
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.users import verify_device_key

    runner = CliRunner()
    first = runner.invoke(app, ["users", "device-key", "--store", "S001", "--device", "T1"])
    assert first.exit_code == 0, first.output
    old = first.stdout.strip().splitlines()[-1]
    rotated = runner.invoke(
        app, ["users", "rotate-device-key", "--store", "S001", "--device", "T1", "--grace-hours", "0"]
    )
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip().splitlines()[-1]
    engine = get_engine(settings.ops_store)
    assert new.startswith("csk_") and new != old
    assert verify_device_key(engine, old) is None  # no grace: retired at once
    assert verify_device_key(engine, new) is not None
