"""The ``postgres`` sink: contacts upserted by identity into a PostgreSQL table (psycopg 3).

Each batch is COPYed into a temporary table; ``commit`` upserts the whole file from it with
``INSERT ... ON CONFLICT (identity) DO UPDATE`` and commits, so one file is one transaction:
a file that fails half-way leaves nothing behind. psycopg is optional:
``pip install 'truagents-import[postgres]'``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truagents_import._postgres import PostgresError, connect, lock_key, mask_url, psycopg_module, scrub
from truagents_import.errors import ConfigError
from truagents_import.fields.contact import Contact
from truagents_import.hookspecs import SinkFactory, hookimpl
from truagents_import.sinks._merge import MERGE_POLICIES, MergeOption, MergePolicy, check_merge_policy

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["PostgresSink"]

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")

# (column, PostgreSQL type) of what a contact carries; the table adds created_at and updated_at.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("identity", "text"),
    ("external_id", "text"),
    ("email", "text"),
    ("phone", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("timezone", "text"),
    ("tags", "text[]"),
    ("unsubscribed", "boolean"),
    ("attributes", "jsonb"),
    ("source", "text"),
    ("source_file", "text"),
    ("source_row", "integer"),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_STAGING = "truagents_import_staging"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    identity text PRIMARY KEY,
    external_id text,
    email text,
    phone text,
    first_name text,
    last_name text,
    timezone text,
    tags text[] NOT NULL DEFAULT '{{}}',
    unsubscribed boolean,
    attributes jsonb NOT NULL DEFAULT '{{}}',
    source text,
    source_file text,
    source_row integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

_STAGING_TABLE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (seq bigint NOT NULL, "
    + ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)

#: The importer's staging file (:class:`~truagents_import.sinks.BulkLoad`) is COPYed into this table as
#: it is: tags and attributes as their JSON text. Its identities are unique (the staging file keeps the
#: later row); they are upserted in identity order, as batches are, so that workers writing the same
#: contacts at once wait for each other instead of deadlocking.
_BULK = "truagents_import_bulk"
_BULK_TABLE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_BULK} (seq bigint NOT NULL, identity text NOT NULL, external_id text,"
    " email text, phone text, first_name text, last_name text, timezone text, tags jsonb NOT NULL,"
    " unsubscribed boolean, attributes jsonb NOT NULL) ON COMMIT DELETE ROWS"
)


def _escaped(column: str) -> str:
    """SQLite's expression for ``column`` as a field of COPY's text format (``\\N`` for NULL)."""
    text = (
        f"replace(replace(replace(replace({column}, '\\', '\\\\'), char(10), '\\n'), char(13), '\\r'), char(9), '\\t')"
    )
    return f"coalesce({text}, '\\N')"


#: The staging file's rows as lines of COPY's text format, in row order: SQLite writes them.
_STAGED_LINES = (
    "SELECT "
    + " || char(9) || ".join(
        [
            "row",
            *(_escaped(c) for c in ("identity", "external_id", "email", "phone", "first_name", "last_name", "timezone",
                                    "tags")),
            "CASE unsubscribed WHEN 1 THEN 't' WHEN 0 THEN 'f' ELSE '\\N' END",
            _escaped("attributes"),
        ]
    )
    + " || char(10) FROM staged ORDER BY row"
)  # fmt: skip

_BULK_UPSERT = f"""
INSERT INTO {{table}} AS t ({_NAMES}, created_at, updated_at)
SELECT identity, external_id, email, phone, first_name, last_name, timezone,
       ARRAY(SELECT jsonb_array_elements_text(tags)), unsubscribed, attributes,
       %(source)s, %(file)s, seq, now(), now()
FROM pg_temp.{_BULK}
ORDER BY identity
ON CONFLICT (identity) DO UPDATE SET
"""

_UPSERT = f"""
INSERT INTO {{table}} AS t ({_NAMES}, created_at, updated_at)
SELECT DISTINCT ON (identity) {_NAMES}, now(), now()
FROM pg_temp.{_STAGING}
ORDER BY identity, seq DESC
ON CONFLICT (identity) DO UPDATE SET
"""

_MERGE = """
    external_id = COALESCE(EXCLUDED.external_id, t.external_id),
    email = COALESCE(EXCLUDED.email, t.email),
    phone = COALESCE(EXCLUDED.phone, t.phone),
    first_name = COALESCE(EXCLUDED.first_name, t.first_name),
    last_name = COALESCE(EXCLUDED.last_name, t.last_name),
    timezone = COALESCE(EXCLUDED.timezone, t.timezone),
    tags = ARRAY(
        SELECT u.tag FROM unnest(t.tags || EXCLUDED.tags) WITH ORDINALITY AS u(tag, n)
        GROUP BY u.tag ORDER BY min(u.n)
    ),
    unsubscribed = COALESCE(EXCLUDED.unsubscribed, t.unsubscribed),
    attributes = t.attributes || COALESCE(
        (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(EXCLUDED.attributes) AS e
         WHERE e.value <> '""'::jsonb OR NOT jsonb_exists(t.attributes, e.key)),
        '{{}}'::jsonb
    ),
"""

_REPLACE = """
    external_id = EXCLUDED.external_id, email = EXCLUDED.email, phone = EXCLUDED.phone,
    first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, timezone = EXCLUDED.timezone,
    tags = EXCLUDED.tags, unsubscribed = EXCLUDED.unsubscribed, attributes = EXCLUDED.attributes,
"""

_PROVENANCE = """
    source = EXCLUDED.source, source_file = EXCLUDED.source_file, source_row = EXCLUDED.source_row,
    updated_at = EXCLUDED.updated_at
"""


class PostgresSink:
    """Upserts contacts by identity into a PostgreSQL table (one transaction per file).

    :param url: a libpq connection URL or keyword string (``postgresql://user@host/db``); a
        password may be in it, or come from ``PGPASSWORD`` or ``~/.pgpass``. It is masked in
        every repr and message.
    :param table: the table, created when missing (``name`` or ``schema.name``).
    :param merge: the merge policy for a contact already stored: ``"merge"`` (the default:
        present fields overwrite, empty ones never erase, tags unioned, attributes merged) or
        ``"replace"``. See docs/sinks.md.
    :param connect_timeout: seconds to wait for the server when connecting.

    ``tags`` is ``text[]``, ``attributes`` ``jsonb``, ``unsubscribed`` ``boolean``;
    ``created_at`` and ``updated_at`` are ``timestamptz``. After a lost connection the sink
    reconnects on the next file, once the failed one was rolled back.
    """

    merge = MergeOption("postgres")

    def __init__(
        self,
        url: str,
        table: str = "contacts",
        merge: MergePolicy = "merge",
        connect_timeout: int = 10,
    ) -> None:
        self._psycopg = psycopg_module("the postgres sink")
        if not isinstance(url, str) or not url:
            raise ConfigError('the postgres sink needs url = "postgresql://user@host/database" in [sink]')
        if not _TABLE_NAME.match(table):
            msg = f"[sink] table = {table!r} is not a plain table name; use letters, digits and _ (or schema.table)"
            raise ConfigError(msg)
        self._url = url
        self.table = table
        self.merge = merge
        #: The policy a source passed for the file being written (:meth:`write_merged`), until commit.
        self._file_merge: MergePolicy | None = None
        self.connect_timeout = connect_timeout
        pg_sql = self._psycopg.sql
        ident = pg_sql.Identifier(*table.split("."))
        self._schema_sql: sql.Composed = pg_sql.SQL(_SCHEMA).format(table=ident)
        self._upsert_sqls: dict[str, sql.Composed] = {
            p: pg_sql.SQL(_UPSERT + (_MERGE if p == "merge" else _REPLACE) + _PROVENANCE).format(table=ident)
            for p in MERGE_POLICIES
        }
        self._bulk_upsert_sqls: dict[str, sql.Composed] = {
            p: pg_sql.SQL(_BULK_UPSERT + (_MERGE if p == "merge" else _REPLACE) + _PROVENANCE).format(table=ident)
            for p in MERGE_POLICIES
        }
        self._copy_sql = f"COPY pg_temp.{_STAGING} (seq, {_NAMES}) FROM STDIN (FORMAT BINARY)"
        self._copy_types = ["int8", *(kind for _, kind in _COLUMNS)]
        self._conn: psycopg.Connection[Any] | None = None
        self._pending = False
        self._seq = 0
        self._connection()

    @property
    def url(self) -> str:
        """The connection URL with its password masked."""
        return mask_url(self._url)

    def __repr__(self) -> str:
        return f"PostgresSink({self.url!r}, table={self.table!r}, merge={self.merge!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._pending:
            msg = (
                f"postgres sink {self.url}: the connection was lost in the middle of a file; call rollback() "
                "and write the file again"
            )
            raise PostgresError(msg)
        self._drop_connection()
        conn = connect(self._url, "the postgres sink", autocommit=False, connect_timeout=self.connect_timeout)
        try:
            with conn.cursor() as cur:
                # Serialise schema creation: concurrent CREATE TABLE IF NOT EXISTS can collide.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema", self.table),))
                cur.execute(self._schema_sql)
                cur.execute(_STAGING_TABLE)
                cur.execute(_BULK_TABLE)
            conn.commit()
        except self._psycopg.Error as exc:
            conn.close()
            msg = f"postgres sink {self.url} cannot create table {self.table!r}: {self._detail(exc)}"
            raise ConfigError(msg + "; grant the user CREATE on the schema, or create the table yourself") from None
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(self._psycopg.Error):
                self._conn.close()
            self._conn = None

    def _detail(self, exc: BaseException) -> str:
        return scrub(f"{type(exc).__name__}: {exc}", self._url)

    def _failed(self, what: str, exc: BaseException) -> PostgresError:
        msg = (
            f"postgres sink {self.url} table {self.table!r}: {what} failed: {self._detail(exc)}; nothing of this "
            "file is committed; the next run imports it again once the server is reachable"
        )
        return PostgresError(msg)

    def write(self, contacts: Sequence[Contact]) -> None:
        """COPY a batch into the file's temporary table (nothing reaches the table before ``commit``)."""
        self.write_merged(contacts, self._file_merge or self.merge)

    def write_merged(self, contacts: Sequence[Contact], merge: MergePolicy) -> None:
        """:meth:`write` with ``merge`` as the policy of the upsert at the next :meth:`commit`
        (a source's ``merge`` option, for this file's contacts)."""
        self._file_merge = check_merge_policy(merge, "postgres")
        if not contacts:
            return
        for c in contacts:
            if c.identity is None:
                msg = f"postgres sink: a contact without external_id, email or phone cannot be upserted: {c!r}"
                raise ValueError(msg)
        conn = self._connection()
        jsonb = self._psycopg.types.json.Jsonb
        self._pending = True
        try:
            with conn.cursor() as cur, cur.copy(self._copy_sql) as copy:
                copy.set_types(self._copy_types)
                for c in contacts:
                    self._seq += 1
                    copy.write_row(
                        (
                            self._seq,
                            c.identity,
                            c.external_id,
                            c.email,
                            c.phone,
                            c.first_name,
                            c.last_name,
                            c.timezone,
                            list(c.tags),
                            c.unsubscribed,
                            jsonb(dict(c.attributes)),
                            c.source,
                            c.source_file,
                            c.source_row,
                        )
                    )
        except self._psycopg.Error as exc:
            raise self._failed("COPY", exc) from None

    def takes_staging(self) -> bool:
        """Whether the importer may hand this sink its staging file (:meth:`load_staging`) instead of
        calling :meth:`write`: not when a subclass changed what ``write`` does."""
        return type(self).write is PostgresSink.write and type(self).write_merged is PostgresSink.write_merged

    def load_staging(self, staging: Path, source: str, file: str, merge: MergePolicy | None = None) -> None:
        """Upsert every contact of the importer's staging file of ``source``'s ``file`` inside the file's
        transaction: what :meth:`write` and :meth:`commit` do with the same contacts, without a
        :class:`Contact` per row. SQLite writes the rows as COPY's text format, PostgreSQL parses them
        (tags and attributes arrive as the JSON text the staging file holds), then one upsert."""
        policy = check_merge_policy(merge, "postgres") if merge is not None else self._file_merge or self.merge
        conn = self._connection()
        self._pending = True
        lines = sqlite3.connect(f"{staging.resolve().as_uri()}?mode=ro", uri=True)
        what = "COPY"
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY pg_temp.{_BULK} FROM STDIN") as copy:
                    rows = lines.execute(_STAGED_LINES)
                    while chunk := rows.fetchmany(4096):
                        copy.write("".join(line for (line,) in chunk))
                what = "upsert"
                cur.execute(self._bulk_upsert_sqls[policy], {"source": source, "file": file})
        except self._psycopg.Error as exc:
            raise self._failed(what, exc) from None
        finally:
            lines.close()

    def commit(self) -> None:
        """Upsert everything written since the last commit and commit: durable once this returns."""
        if not self._pending:
            self._file_merge = None
            return
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                # Batches written since the last commit (none after load_staging: a no-op then).
                cur.execute(self._upsert_sqls[self._file_merge or self.merge])
            conn.commit()
        except self._psycopg.Error as exc:
            raise self._failed("upsert", exc) from None
        self._pending = False
        self._seq = 0
        self._file_merge = None

    def rollback(self) -> None:
        """Abandon everything written since the last commit (a lost connection is dropped, to be reopened)."""
        conn = self._conn
        self._pending = False
        self._seq = 0
        self._file_merge = None
        if conn is None:
            return
        if conn.closed or conn.broken:
            self._drop_connection()
            return
        try:
            conn.rollback()
        except self._psycopg.Error:
            self._drop_connection()

    def close(self) -> None:
        """Roll back anything uncommitted and close the connection."""
        self.rollback()
        self._drop_connection()


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``postgres`` sink (options: ``url``; ``table``, default ``contacts``; ``merge``)."""
    register("postgres", PostgresSink)
