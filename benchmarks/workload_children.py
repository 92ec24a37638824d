"""The children of ``benchmarks/workload.py``: pyarrow's parse and dlt's pipeline, each in its own process.

    python benchmarks/workload_children.py pyarrow FILE
    python benchmarks/workload_children.py dlt SPEC.json

Each prints one JSON line: what it read or loaded and how long the work itself took, or
``{"skipped": ...}`` when its library is not installed (``nox -s bench`` installs both).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def pyarrow_child(path: Path) -> int:
    """Stream the file with pyarrow, every column a string; print rows and seconds as JSON."""
    try:
        import pyarrow as pa
        from pyarrow import csv as pa_csv
    except ImportError:
        print(json.dumps({"skipped": "pyarrow is not installed (nox -s bench installs it)"}))
        return 0
    t = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    options = pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    rows = 0
    for batch in pa_csv.open_csv(path, convert_options=options):
        rows += batch.num_rows
    print(json.dumps({"rows": rows, "parse_seconds": time.perf_counter() - t, "version": pa.__version__}))
    return 0


def dlt_child(spec_path: Path) -> int:
    """Run dlt's filesystem source piped into read_csv_duckdb, loaded into DuckDB; print what it did."""
    t0 = time.perf_counter()
    spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))
    os.environ["DLT_DATA_DIR"] = spec["work"]
    try:
        import dlt
        import duckdb
        from dlt.sources.filesystem import filesystem, read_csv_duckdb
    except ImportError as exc:
        print(json.dumps({"skipped": f"dlt is not installed (nox -s bench installs it): {exc}"}))
        return 0
    if spec["via"] == "sftp":
        files = _dlt_sftp_files(spec, filesystem)
    else:
        files = filesystem(bucket_url=Path(spec["local_dir"]).as_uri(), file_glob=spec["name"])
    database = str(Path(spec["work"]) / "dlt.duckdb")
    pipeline = dlt.pipeline(
        pipeline_name="workload",
        destination=dlt.destinations.duckdb(database),
        dataset_name="workload",
        pipelines_dir=str(Path(spec["work"]) / "pipelines"),
    )
    t = time.perf_counter()
    # use_pyarrow: Arrow batches (dlt's JSON path needs DuckDB's fetchmany, gone in DuckDB 2).
    pipeline.run((files | read_csv_duckdb(use_pyarrow=True)).with_name("contacts"))
    run_seconds = time.perf_counter() - t
    with duckdb.connect(database, read_only=True) as conn:
        row = conn.execute("SELECT count(*) FROM workload.contacts").fetchone()
    print(json.dumps({"rows": row[0] if row else 0, "run_seconds": run_seconds,
                      "setup_seconds": t - t0, "version": dlt.__version__, "duckdb": duckdb.__version__}))  # fmt: skip
    return 0


def _dlt_sftp_files(spec: dict[str, Any], filesystem: Any) -> Any:
    """dlt's filesystem resource over SFTP, with paramiko (dlt's documented backend) and the host key pinned."""
    import fsspec
    import paramiko
    from dlt.common.configuration.specs import SFTPCredentials

    # sshfs (a dependency of this package) registers itself for sftp:// and refuses the
    # paramiko keywords dlt passes: give the protocol back to fsspec's paramiko filesystem.
    fsspec.register_implementation("sftp", "fsspec.implementations.sftp.SFTPFileSystem", clobber=True)
    pinned = spec["host_key_blob"]

    class Pinned(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if key.get_base64() != pinned:
                msg = f"the host key of {hostname} is not the pinned one"
                raise paramiko.SSHException(msg)

    credentials = SFTPCredentials(
        sftp_port=spec["port"], sftp_username=spec["username"], sftp_key_filename=spec["private_key"],
        sftp_allow_agent=False, sftp_look_for_keys=False, sftp_timeout=30.0,
    )  # fmt: skip
    return filesystem(
        bucket_url=f"sftp://{spec['host']}{spec['remote_dir']}",
        credentials=credentials,
        file_glob=spec["name"],
        kwargs={"host_key_policy": Pinned()},
    )


def main(argv: list[str]) -> int:
    """``pyarrow FILE`` or ``dlt SPEC``."""
    if len(argv) == 2 and argv[0] == "pyarrow":
        return pyarrow_child(Path(argv[1]))
    if len(argv) == 2 and argv[0] == "dlt":
        return dlt_child(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
