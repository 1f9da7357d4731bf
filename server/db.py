"""SQLite persistence: runs, their events, and sweeps, in WAL mode.

Every write goes through :class:`Store` on the event loop's thread, so the order
in which events are stored is the order in which they are broadcast, and a
replay read on that thread sees everything broadcast before it.

    runs(id, name, preset, status, error, config, summary, created_at, started_at,
         finished_at, last_seq, latest, final, best_test_accuracy, weights_step)
    events(run_id, seq, type, json)   -- primary key (run_id, seq); json is the exact
                                      -- text sent to websocket clients
    sweeps(id, name, status, error, spec, budget, created_at, finished_at, last_seq)
    sweep_trials(sweep_id, number, run_id, status, data)   -- data: the trial's row as JSON
    sweep_events(sweep_id, seq, type, json)                -- like events, for /ws/sweeps/{id}

A trial's run is an ordinary row of ``runs`` with ``sweep_id``, ``trial`` and ``params`` set
(NULL for other runs). Schema version 2 added those three columns and the sweep tables; an
older file is migrated in place when opened read-write (``ALTER TABLE ... ADD COLUMN``), and
read as is when read-only (the missing columns read as NULL).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger("backprop_lab.db")

SCHEMA_VERSION = 4
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
    weights_step INTEGER,
    sweep_id TEXT,
    trial INTEGER,
    params TEXT,
    parent_id TEXT,
    fork_step INTEGER,
    "where" TEXT,
    notes TEXT,
    tags TEXT
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
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    spec TEXT NOT NULL,
    budget INTEGER NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    run_id TEXT,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (sweep_id, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sweep_events (
    sweep_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (sweep_id, seq)
) WITHOUT ROWID;
"""
#: columns added after version 1: (name, SQL type); NULL for rows written before
ADDED_RUN_COLUMNS = (("sweep_id", "TEXT"), ("trial", "INTEGER"), ("params", "TEXT"),
                     ("parent_id", "TEXT"), ("fork_step", "INTEGER"), ("where", "TEXT"),
                     ("notes", "TEXT"), ("tags", "TEXT"))
JSON_FIELDS = ("config", "summary", "latest", "final", "params", "tags")
RUN_FIELDS = ("id", "name", "preset", "status", "error", "config", "summary", "created_at",
              "started_at", "finished_at", "last_seq", "latest", "final", "best_test_accuracy",
              "weights_step", "sweep_id", "trial", "params", "parent_id", "fork_step", "where",
              "notes", "tags")
SWEEP_FIELDS = ("id", "name", "status", "error", "spec", "budget", "created_at", "finished_at",
                "last_seq")


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
            have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            added = "".join(f'ALTER TABLE runs ADD COLUMN "{name}" {kind};'
                            for name, kind in ADDED_RUN_COLUMNS if have and name not in have)
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}{added}"
                               f"PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
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
        cols = ", ".join(f'"{k}"' for k in row)    # quoted: "where" is an SQL keyword
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
                sets = ", ".join(f'"{k}" = ?' for k in row)
                stmts.append((f"UPDATE runs SET {sets} WHERE id = ?", (*row.values(), run_id)))
        if stmts:
            self._write(stmts)

    def delete_run(self, run_id: str) -> None:
        self._write([("DELETE FROM events WHERE run_id = ?", (run_id,)),
                     ("DELETE FROM runs WHERE id = ?", (run_id,))])

    # ------------------------------------------------------------ reads

    def all_runs(self) -> list[dict]:
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
        cols = [f'"{f}"' if f in have else f'NULL AS "{f}"' for f in RUN_FIELDS]   # an older file, read-only
        cur = self.conn.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY created_at")
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

    def events_of_type(self, run_id: str, kind: str) -> list[dict]:
        """A run's stored events of one type, oldest first, decoded."""
        return [json.loads(j) for (j,) in self.conn.execute(
            "SELECT json FROM events WHERE run_id = ? AND type = ? ORDER BY seq",
            (run_id, kind)).fetchall()]

    def snapshot_steps(self, run_id: str) -> list[tuple[int, int, int]]:
        """A run's stored snapshots, oldest first: ``[(seq, step, epoch)]`` (not their arrays)."""
        return self.conn.execute(
            "SELECT seq, json_extract(json, '$.step'), json_extract(json, '$.epoch') FROM events "
            "WHERE run_id = ? AND type = 'snapshot' ORDER BY seq", (run_id,)).fetchall()

    def eval_metrics(self, run_id: str) -> list[tuple[int, float | None, float | None]]:
        """A run's stored evals, oldest first: ``[(step, test_accuracy, test_loss)]``."""
        return self.conn.execute(
            "SELECT json_extract(json, '$.step'), json_extract(json, '$.test_accuracy'), "
            "json_extract(json, '$.test_loss') FROM events "
            "WHERE run_id = ? AND type = 'eval' ORDER BY seq", (run_id,)).fetchall()

    def event_at(self, run_id: str, seq: int) -> dict | None:
        """One stored event, decoded (None if there is none at ``seq``)."""
        row = self.conn.execute("SELECT json FROM events WHERE run_id = ? AND seq = ?",
                                (run_id, seq)).fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------ sweeps

    def _has_sweeps(self) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sweeps'").fetchone() \
            is not None

    def insert_sweep(self, sweep: dict, events: list[tuple[int, str, str]]) -> None:
        row = {k: sweep.get(k) for k in SWEEP_FIELDS}
        row["spec"] = json.dumps(row["spec"], allow_nan=False)
        self._write([(f"INSERT INTO sweeps ({', '.join(row)}) VALUES "
                      f"({', '.join('?' for _ in row)})", tuple(row.values())),
                     ("INSERT INTO sweep_events (sweep_id, seq, type, json) VALUES (?, ?, ?, ?)",
                      [(sweep["id"], s, t, j) for s, t, j in events])])

    def append_sweep(self, updates: dict[str, tuple[dict, list[tuple[int, str, str]]]],
                     trials: list[tuple[str, int, str | None, str, dict]] = ()) -> None:
        """One transaction: for each sweep id its changed fields and new events, and
        ``(sweep_id, number, run_id, status, data)`` trial rows to insert or replace."""
        stmts: list[tuple[str, Any]] = []
        for sweep_id, (fields, events) in updates.items():
            if events:
                stmts.append(("INSERT INTO sweep_events (sweep_id, seq, type, json) "
                              "VALUES (?, ?, ?, ?)", [(sweep_id, s, t, j) for s, t, j in events]))
            if fields:
                row = {k: (json.dumps(v, allow_nan=False) if k == "spec" else v)
                       for k, v in fields.items()}
                sets = ", ".join(f"{k} = ?" for k in row)
                stmts.append((f"UPDATE sweeps SET {sets} WHERE id = ?", (*row.values(), sweep_id)))
        if trials:
            stmts.append(("INSERT OR REPLACE INTO sweep_trials (sweep_id, number, run_id, status, "
                          "data) VALUES (?, ?, ?, ?, ?)",
                          [(s, n, r, st, json.dumps(d, allow_nan=False))
                           for s, n, r, st, d in trials]))
        if stmts:
            self._write(stmts)

    def delete_sweep(self, sweep_id: str) -> None:
        self._write([("DELETE FROM sweep_events WHERE sweep_id = ?", (sweep_id,)),
                     ("DELETE FROM sweep_trials WHERE sweep_id = ?", (sweep_id,)),
                     ("DELETE FROM sweeps WHERE id = ?", (sweep_id,))])

    def all_sweeps(self) -> list[dict]:
        """Every sweep with its trial rows (``trials``: ``{number: data}``), oldest first."""
        if not self._has_sweeps():
            return []
        out = []
        for row in self.conn.execute(f"SELECT {', '.join(SWEEP_FIELDS)} FROM sweeps "
                                     "ORDER BY created_at").fetchall():
            d = dict(zip(SWEEP_FIELDS, row))
            d["spec"] = json.loads(d["spec"])
            d["trials"] = {n: json.loads(data) for n, data in self.conn.execute(
                "SELECT number, data FROM sweep_trials WHERE sweep_id = ? ORDER BY number",
                (d["id"],)).fetchall()}
            out.append(d)
        return out

    def sweep_events_after(self, sweep_id: str, after_seq: int,
                           limit: int = 500) -> list[tuple[int, str]]:
        return self.conn.execute(
            "SELECT seq, json FROM sweep_events WHERE sweep_id = ? AND seq > ? ORDER BY seq "
            "LIMIT ?", (sweep_id, after_seq, limit)).fetchall()

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
