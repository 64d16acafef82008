"""Schema migrations on both back ends: what opening a database does to the schema it finds.

A fresh database ends at head with every table the code queries; the hand-written migrations and
``db.metadata`` describe the same schema; a previous release's file (jobs and events, no Alembic) keeps
its data and gains the new tables; a database at head is left alone, without even importing Alembic;
openers racing on a fresh database create the schema once; a schema newer than the code is refused in
words, not a traceback; and none of it prints anything.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    event,
    inspect,
    select,
)

from opsconsole.core import clock
from opsconsole.core.errors import OpsError
from opsconsole.core.store import db, migrations
from opsconsole.core.store.db import Database, SchemaTooNew, StoreUnavailable, ensure_schema, make_engine

RACERS = 2


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


# -- the scripts ------------------------------------------------------------------------------------------


def test_head_constant_names_the_scripts_single_head() -> None:
    # HEAD lets an open at head skip Alembic; a new migration that forgot to move it would never run.
    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert script.get_heads() == [migrations.HEAD]
    assert [s.revision for s in script.walk_revisions()] == ["0005", "0004", "0003", "0002", "0001"]


# -- a fresh database ---------------------------------------------------------------------------------------


def test_a_fresh_database_ends_at_head_with_every_table(db_url: str) -> None:
    database = Database(db_url)
    try:
        assert _revision(database.engine) == migrations.HEAD
        assert _version_rows(database.engine) == [migrations.HEAD]
        assert set(db.metadata.tables) <= _tables(database.engine)
    finally:
        database.close()


def test_the_migrations_and_db_metadata_agree(db_url: str) -> None:
    database = Database(db_url)
    try:
        with database.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        # Empty on both back ends, types, lengths, nullability and indexes included. The one dialect
        # artefact: SQLite has no time zone flag, it reflects DateTime(timezone=True) as plain DATETIME
        # and Alembic does not count that as a change (PostgreSQL's TIMESTAMP WITH TIME ZONE is compared
        # in full). Alembic does not compare primary key names; both sides use the same convention.
        assert diff == []
    finally:
        database.close()


def test_downgrade_to_base_and_back_to_head(db_url: str) -> None:
    database = Database(db_url)
    try:
        with database.engine.connect() as conn:
            config = migrations.alembic_config(conn)
            command.downgrade(config, "0001")
            assert _tables_on(conn) == {"alembic_version", "jobs", "job_events"}
            command.downgrade(config, "base")
            assert _tables_on(conn) == {"alembic_version"}
            conn.commit()
        assert ensure_schema(database.engine) is True
        assert _revision(database.engine) == migrations.HEAD
        assert set(db.metadata.tables) <= _tables(database.engine)
    finally:
        database.close()


def _tables_on(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


# -- databases made before migrations -----------------------------------------------------------------------

# The previous release's schema, frozen as it shipped (opsconsole/core/runs/jobs.py before the migrations):
# no naming convention, created with ``metadata.create_all``, no alembic_version.
_previous = MetaData()
_previous_jobs = Table(
    "jobs",
    _previous,
    Column("id", String(32), primary_key=True),
    Column("action", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("playbook", String(512), nullable=False),
    Column("check_mode", Boolean, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("actor", String(256), nullable=False),
    Column("face", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("rc", Integer),
    Column("last_task", Text),
    Column("stats", JSON),
    Column("timings", JSON),
    Column("pid", Integer),
    Column("error", Text),
)
_previous_events = Table(
    "job_events",
    _previous,
    Column("job_id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("host", String(256)),
    Column("play", Text),
    Column("task", Text),
    Column("message", Text, nullable=False),
    Column("changed", Boolean, nullable=False),
    Column("data", JSON, nullable=False),
    PrimaryKeyConstraint("job_id", "seq", name="pk_job_events"),
)

CREATED = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def test_a_previous_release_database_is_adopted_and_keeps_its_data(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _previous.create_all(engine)
        with engine.begin() as conn:
            conn.execute(_previous_jobs.insert().values(
                id="j1", action="scale", params={"replicas": 4}, playbook="scale.yml", check_mode=False,
                status="succeeded", actor="alice", face="cli", created_at=CREATED, rc=0,
                stats={"totals": {"ok": 3}},
            ))
            conn.execute(_previous_events.insert().values(
                job_id="j1", seq=1, at=CREATED, kind="ok", host="localhost", play="p", task="t",
                message="", changed=True, data={"n": 1},
            ))
        assert "alembic_version" not in _tables(engine)
    finally:
        engine.dispose()

    database = Database(db_url)
    try:
        assert _revision(database.engine) == migrations.HEAD
        assert set(db.metadata.tables) <= _tables(database.engine)
        with database.engine.connect() as conn:
            job = conn.execute(select(db.jobs_table)).mappings().one()
            events = conn.execute(select(db.job_events_table)).mappings().all()
        assert (job["id"], job["action"], job["params"], job["rc"], job["stats"]) == (
            "j1", "scale", {"replicas": 4}, 0, {"totals": {"ok": 3}})
        assert clock.utc(job["created_at"]) == CREATED
        assert [(e["job_id"], e["seq"], e["data"]) for e in events] == [("j1", 1, {"n": 1})]
    finally:
        database.close()


def test_a_database_made_by_create_all_of_every_table_is_stamped_at_head(db_url: str) -> None:
    # Main between the previous release and the migrations created 0002's tables with create_all.
    engine = make_engine(db_url)
    try:
        names_of_0002 = dict(db._UNVERSIONED)["0002"]
        tables_of_0002 = [t for name, t in db.metadata.tables.items() if name in names_of_0002]
        db.metadata.create_all(engine, tables=tables_of_0002)
        assert ensure_schema(engine) is True
        assert _version_rows(engine) == [migrations.HEAD]
    finally:
        engine.dispose()


# -- at head ----------------------------------------------------------------------------------------------


def test_opening_a_database_at_head_changes_nothing(db_url: str) -> None:
    Database(db_url).close()
    engine = make_engine(db_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: statements.append(statement))
    try:
        assert ensure_schema(engine) is False
        assert ensure_schema(engine) is False
        assert _version_rows(engine) == [migrations.HEAD]
    finally:
        engine.dispose()
    # Reads only: no DDL, no write to alembic_version, no lock taken.
    words = {s.split()[0].upper() for s in statements if s.strip()}
    assert words <= {"SELECT", "PRAGMA", "BEGIN", "ROLLBACK"}, statements


def test_opening_a_database_at_head_does_not_import_alembic(db_url: str) -> None:
    # Alembic costs ~120 ms to import, and every CLI call opens the database.
    Database(db_url).close()
    code = textwrap.dedent(f"""
        import sys
        from opsconsole.core.store.db import Database
        Database({db_url!r}).close()
        print("alembic" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- racing openers ---------------------------------------------------------------------------------------


def _open_at_once(url: str, name: str, barrier: Any, results: Any) -> None:
    """One opener (a spawned process, as another bot replica would be): ensure the schema with the others."""
    try:
        engine = make_engine(url)
        barrier.wait(60)
        changed = ensure_schema(engine)
        engine.dispose()
        results.put((name, "changed" if changed else "found head", ""))
    except BaseException as exc:
        results.put((name, "error", repr(exc)))
        barrier.abort()
        raise


def test_processes_opening_a_fresh_database_at_once_create_the_schema_once(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_open_at_once, args=(db_url, f"replica-{i}", barrier, results), daemon=True)
             for i in range(RACERS)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=90) for _ in range(RACERS)]
    except queue.Empty:
        pytest.fail("openers stalled")
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert not [r for r in got if r[1] == "error"], got
    assert sorted(outcome for _, outcome, _ in got) == ["changed"] + ["found head"] * (RACERS - 1), got
    assert all(p.exitcode == 0 for p in procs)
    engine = make_engine(db_url)
    try:
        assert _version_rows(engine) == [migrations.HEAD]
        assert set(db.metadata.tables) <= _tables(engine)
    finally:
        engine.dispose()


# -- refusals and quiet -------------------------------------------------------------------------------------


def test_a_schema_newer_than_the_code_is_a_clear_error(db_url: str) -> None:
    database = Database(db_url)
    with database.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    database.close()

    with pytest.raises(SchemaTooNew) as caught:
        Database(db_url)
    error = caught.value
    assert isinstance(error, StoreUnavailable) and isinstance(error, OpsError)
    assert error.title == "database schema too new"
    assert ("database schema is at revision 0099, newer than this opsconsole knows (head 0005): "
            "upgrade opsconsole") in error.message
    engine = make_engine(db_url)
    try:
        assert _version_rows(engine) == ["0099"]  # refused, not touched
    finally:
        engine.dispose()


def test_migrating_prints_and_logs_nothing(
    db_url: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # As if the application logged INFO to the console: Alembic's step-by-step INFO must not show.
    caplog.set_level(logging.DEBUG)
    alembic_level = logging.getLogger("alembic").level
    Database(db_url).close()
    assert [r for r in caplog.records if r.name.startswith("alembic")] == []
    assert capfd.readouterr() == ("", "")
    assert logging.getLogger("alembic").level == alembic_level


def test_a_damaged_version_table_is_a_clear_error(db_url: str) -> None:
    database = Database(db_url)
    with database.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('0001')")
    database.close()

    with pytest.raises(StoreUnavailable, match=r"the schema cannot be upgraded: .*more than one head"):
        Database(db_url)
