"""The PostgreSQL test helper starts a cluster wherever TMPDIR points, even inside a private folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pg import find_pg_bin, run_postgres

IN_CI = os.environ.get("CI") == "true"


def test_a_cluster_starts_with_tmpdir_in_a_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if find_pg_bin() is None:
        if IN_CI:
            pytest.fail("CI=true but PostgreSQL is not installed")
        pytest.skip("PostgreSQL is not installed")
    private = tmp_path / "private"
    (private / "tmp").mkdir(parents=True)
    private.chmod(0o700)
    monkeypatch.setenv("TMPDIR", str(private / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the folder it chose
    assert tempfile.gettempdir() == str(private / "tmp")
    with run_postgres() as server:
        assert server.pid is not None
        if os.geteuid() == 0:  # run as the postgres user, in a folder that user can reach
            assert not server.workdir.is_relative_to(private)
        else:
            assert server.workdir.is_relative_to(private)
        workdir = server.workdir
    assert not workdir.exists()
