"""The `lakesync` command run in this process (the subprocess tests prove the installed one)."""

from __future__ import annotations

import subprocess

import pytest

from lakesync.cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``lakesync *argv`` in-process; its exit code and output as a subprocess would give them."""
    code = main(list(argv))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), code, out.out, out.err)
