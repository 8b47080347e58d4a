"""The CLI contract: --help everywhere, user errors are one line with exit code 2."""

from __future__ import annotations

import click
from click.testing import CliRunner
from support.cli import run_cli

from ocrtune.cli import GROUPS, cli


def _all_command_paths():
    ctx = click.Context(cli)
    paths = [[]]
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        paths.append([name])
        if isinstance(cmd, click.Group):
            paths += [[name, sub] for sub in cmd.list_commands(ctx)]
    return paths


def test_help_everywhere():
    runner = CliRunner()
    paths = _all_command_paths()
    assert len(paths) > len(GROUPS)
    for path in paths:
        r = runner.invoke(cli, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage:" in r.output


def test_version():
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("ocrtune ")


def test_unknown_command_and_bad_flag_exit_2():
    r = run_cli("no-such-command")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("stack", "up", "--s3-port", "notaport")
    assert r.returncode == 2 and "Traceback" not in r.stderr
