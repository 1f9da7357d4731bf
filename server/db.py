"""SQLite persistence: one table of runs, one of events, in WAL mode.

Every write goes through :class:`Store` on the event loop's thread, so the order
in which events are stored is the order in which they are broadcast, and a
replay read on that thread sees everything broadcast before it.

    runs(id, name, preset, status, error, config, summary, created_at, started_at,
         finished_at, last_seq, latest, final, best_test_accuracy, weights_step)
    events(run_id, seq, type, json)   -- primary key (run_id, seq); json is the exact
                                      -- text sent to websocket clients
"""
from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger("backprop_lab.db")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    preset TEXT,
    status TEXT NOT NULL,
    error TEXT,
    config TEXT NOT NULL,
    summary TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    latest TEXT,
    final TEXT,
    best_test_accuracy REAL,
    weights_step INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_type ON events (run_id, type, seq);
"""
JSON_FIELDS = ("config", "summary", "latest", "final")
RUN_FIELDS = ("id", "name", "preset", "status", "error", "config", "summary", "created_at",
              "started_at", "finished_at", "last_seq", "latest", "final", "best_test_accuracy",
              "weights_step")


class StoreError(RuntimeError):
    """The database could not be opened or written; the message says which file and why."""


class Store:
    """The one place that reads and writes the database."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.read_only: str | None = None   # the reason, when writes are impossible
        self.conn: sqlite3.Connection | None = None

    # ------------------------------------------------------------ open/close

    def open(self) -> None:
        """Open read-write (creating the file and schema), else read-only with a reason.

        Raises ``StoreError`` if the database cannot even be read.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA user_version={SCHEMA_VERSION};"
                               "COMMIT;")
            self.conn = conn
            return
        except (sqlite3.Error, OSError) as e:
            reason = f"cannot write the database {self.path}: {_why(e)}"
        if not self.path.is_file():
            raise StoreError(reason)
        for uri in (f"file:{self.path}?mode=ro", f"file:{self.path}?immutable=1"):
            try:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                conn.execute("SELECT count(*) FROM runs").fetchone()
                self.conn, self.read_only = conn, reason
                log.warning("%s; serving stored runs read-only", reason)
                return
            except sqlite3.Error as e:
                last = e
        raise StoreError(f"{reason}; reading it failed too: {_why(last)}")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:  # pragma: no cover
                pass
            self.conn = None

    # ------------------------------------------------------------ writes

    def _write(self, statements: Iterable[tuple[str, Any]]) -> None:
        if self.read_only:
            raise StoreError(self.read_only)
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                if isinstance(args, list):
                    conn.executemany(sql, args)
                else:
                    conn.execute(sql, args)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(f"cannot write the database {self.path}: {_why(e)}") from None

    @staticmethod
    def _encode(fields: dict) -> dict:
        return {k: (json.dumps(v, allow_nan=False) if k in JSON_FIELDS and v is not None else v)
                for k, v in fields.items()}

    def insert_run(self, run: dict, events: list[tuple[int, str, str]]) -> None:
        row = self._encode({k: run.get(k) for k in RUN_FIELDS})
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._write([(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values())),
                     ("INSERT INTO events (run_id, seq, type, json) VALUES (?, ?, ?, ?)",
                      [(run["id"], s, t, j) for s, t, j in events])])

    def append(self, updates: dict[str, tuple[dict, list[tuple[int, str, str]]]]) -> None:
        """One transaction: for each run id, its changed fields and its new events."""
        stmts: list[tuple[str, Any]] = []
        for run_id, (fields, events) in updates.items():
            if events:
                stmts.append(("INSERT INTO events (run_id, seq, type, json) VALUES (?, ?, ?, ?)",
                              [(run_id, s, t, j) for s, t, j in events]))
            if fields:
                row = self._encode(fields)
                sets = ", ".join(f"{k} = ?" for k in row)
                stmts.append((f"UPDATE runs SET {sets} WHERE id = ?", (*row.values(), run_id)))
        if stmts:
            self._write(stmts)

    def delete_run(self, run_id: str) -> None:
        self._write([("DELETE FROM events WHERE run_id = ?", (run_id,)),
                     ("DELETE FROM runs WHERE id = ?", (run_id,))])

    # ------------------------------------------------------------ reads

    def all_runs(self) -> list[dict]:
        cur = self.conn.execute(f"SELECT {', '.join(RUN_FIELDS)} FROM runs ORDER BY created_at")
        out = []
        for row in cur.fetchall():
            d = dict(zip(RUN_FIELDS, row))
            for k in JSON_FIELDS:
                d[k] = json.loads(d[k]) if d[k] is not None else None
            out.append(d)
        return out

    def events_after(self, run_id: str, after_seq: int, limit: int = 500) -> list[tuple[int, str]]:
        """Stored events with ``seq > after_seq``, oldest first: ``[(seq, json text)]``."""
        return self.conn.execute(
            "SELECT seq, json FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit)).fetchall()

    def count_events(self, run_id: str) -> int:
        return self.conn.execute("SELECT count(*) FROM events WHERE run_id = ?",
                                 (run_id,)).fetchone()[0]


def _why(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if "readonly" in msg or "read-only" in msg:
        return f"{msg} (the file or its folder is read-only)"
    if "full" in msg:
        return f"{msg} (free some disk space)"
    return msg
