"""The collector database's schema, as ordered migration steps for SQLite and PostgreSQL.

A database records the steps applied to it in ``schema_version`` (one row per step).  Opening
a store applies the missing steps in order, each in its own transaction, so a database made
by an older blankspot is upgraded in place; a database newer than this code refuses to open
rather than being written with the wrong idea of its columns.

Steps are append-only (:mod:`agent.shared.migrations`, which also says which are pending).
The column list of ``readings`` is documented in ``docs/collector.md``.
"""
from __future__ import annotations

from agent.shared.migrations import Step


# The per-reading columns besides the key and the JSON body: what maps and reports query.
_SIGNAL_COLUMNS = (
    "registration {text}, operator {text}, mcc {int}, mnc {int}, rat {text}, band {int}, cell_id {bigint}, "
    "rssi_dbm {real}, rsrp_dbm {real}, rsrq_db {real}, sinr_db {real}, quality {text}"
)
_OTHER_COLUMNS = (
    "error {text}, rtt_avg_ms {real}, loss_pct {real}, down_mbps {real}, up_mbps {real}, "
    "event_type {text}, event_message {text}"
)
_SQLITE_TYPES = {"text": "TEXT", "int": "INTEGER", "bigint": "INTEGER", "real": "REAL"}
_PG_TYPES = {"text": "text", "int": "integer", "bigint": "bigint", "real": "double precision"}

MIGRATIONS: tuple[Step, ...] = (
    Step(
        1,
        "readings, quarantine, units, counters",
        sqlite=(
            "CREATE TABLE readings ("
            " device TEXT NOT NULL, seq INTEGER NOT NULL, time TEXT NOT NULL, time_source TEXT NOT NULL,"
            " kind TEXT NOT NULL, lat REAL, lon REAL, fix TEXT, "
            + _SIGNAL_COLUMNS.format(**_SQLITE_TYPES) + ", " + _OTHER_COLUMNS.format(**_SQLITE_TYPES) + ","
            " body TEXT NOT NULL, received_at TEXT NOT NULL,"
            " PRIMARY KEY (device, seq))",
            "CREATE TABLE quarantine ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, collector TEXT NOT NULL,"
            " topic TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL, raw BLOB NOT NULL)",
            "CREATE TABLE units ("
            " device TEXT PRIMARY KEY, state TEXT NOT NULL, last_seen TEXT NOT NULL, status TEXT NOT NULL)",
            "CREATE TABLE counters ("
            " collector TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,"
            " PRIMARY KEY (collector, name)) WITHOUT ROWID",
        ),
        postgres=(
            "CREATE TABLE readings ("
            " device text NOT NULL, seq bigint NOT NULL, time timestamptz NOT NULL, time_source text NOT NULL,"
            " kind text NOT NULL, lat double precision, lon double precision, fix text, "
            + _SIGNAL_COLUMNS.format(**_PG_TYPES) + ", " + _OTHER_COLUMNS.format(**_PG_TYPES) + ","
            " body jsonb NOT NULL, received_at timestamptz NOT NULL,"
            " PRIMARY KEY (device, seq))",
            "CREATE TABLE quarantine ("
            " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, received_at timestamptz NOT NULL,"
            " collector text NOT NULL, topic text NOT NULL, reason text NOT NULL, size bigint NOT NULL,"
            " raw bytea NOT NULL)",
            "CREATE TABLE units ("
            " device text PRIMARY KEY, state text NOT NULL, last_seen timestamptz NOT NULL, status jsonb NOT NULL)",
            "CREATE TABLE counters ("
            " collector text NOT NULL, name text NOT NULL, value bigint NOT NULL, PRIMARY KEY (collector, name))",
        ),
    ),
    Step(
        2,
        "indexes for queries by kind and by time",
        sqlite=(
            "CREATE INDEX readings_by_kind ON readings (kind, device, seq)",
            "CREATE INDEX readings_by_time ON readings (time)",
        ),
        postgres=(
            "CREATE INDEX readings_by_kind ON readings (kind, device, seq)",
            "CREATE INDEX readings_by_time ON readings (time)",
        ),
    ),
)

_LEDGER = (
    "CREATE TABLE seq_ranges (device {text} NOT NULL, first_seq {bigint} NOT NULL, last_seq {bigint} NOT NULL,"
    " PRIMARY KEY (device, first_seq))",
    "CREATE TABLE gone (device {text} NOT NULL, first_seq {bigint} NOT NULL, last_seq {bigint} NOT NULL,"
    " reason {text} NOT NULL, PRIMARY KEY (device, first_seq, last_seq, reason))",
    "CREATE TABLE unit_ledger (device {text} PRIMARY KEY, rev {bigint} NOT NULL, kept_from {bigint},"
    " prev_kept_from {bigint}, unit_rev {bigint})",
    # The runs of consecutive seqs already stored ("gaps and islands"): seq minus its rank is
    # the same along a run.
    "INSERT INTO seq_ranges (device, first_seq, last_seq)"
    " SELECT device, min(seq), max(seq) FROM"
    " (SELECT device, seq, seq - row_number() OVER (PARTITION BY device ORDER BY seq) AS island FROM readings)"
    " AS numbered GROUP BY device, island",
)

MIGRATIONS += (
    Step(
        3,
        "seq ledger: stored ranges, seqs a unit can never send, confirmation revs",
        sqlite=tuple(q.format(**_SQLITE_TYPES) for q in _LEDGER),
        postgres=tuple(q.format(**_PG_TYPES) for q in _LEDGER),
    ),
)


def _build_figures(run, stream, totals: bool = False) -> None:  # type: ignore[no-untyped-def]
    # Imported here: the schema is data, the figures need the grid library.
    from agent.centre.coverage import has_grid_library
    from agent.centre.store.aggregates import Figures

    figures = Figures(run, totals=totals)
    if not has_grid_library() and run("SELECT 1 FROM readings LIMIT 1", ()):
        figures.mark_stale("the database was upgraded without h3")
        return
    figures.rebuild(stream("SELECT device, seq, body FROM readings ORDER BY device, seq", ()))


_FIGURES = (
    "ALTER TABLE readings ADD COLUMN cell {text}",
    "ALTER TABLE readings ADD COLUMN counts_for {text}",
    "CREATE INDEX readings_home ON readings (device, seq) WHERE kind = 'signal' AND registration = 'home'",
    "CREATE TABLE cell_stats (cell {text} NOT NULL, operator {text} NOT NULL, day {text} NOT NULL,"
    " device {text} NOT NULL, samples {bigint} NOT NULL, no_service {bigint} NOT NULL, no_answer {bigint} NOT NULL,"
    " latency_samples {bigint} NOT NULL, throughput_samples {bigint} NOT NULL, trusted {bigint} NOT NULL,"
    " unsynced {bigint} NOT NULL, first_trusted {text}, last_trusted {text}, first_unsynced {text},"
    " last_unsynced {text}, histograms {text} NOT NULL, PRIMARY KEY (cell, operator, day, device))",
    "CREATE TABLE operator_names (operator {text} NOT NULL, name {text} NOT NULL, n {bigint} NOT NULL,"
    " PRIMARY KEY (operator, name))",
    # A row 'figures_stale' while readings are stored without their figures (no h3).
    "CREATE TABLE figures_state (name {text} PRIMARY KEY, value {text} NOT NULL)",
)

MIGRATIONS += (
    Step(
        4,
        "coverage figures per cell, operator, day and unit, kept as readings arrive",
        sqlite=tuple(q.format(**_SQLITE_TYPES) for q in _FIGURES),
        postgres=tuple(q.format(**_PG_TYPES) for q in _FIGURES),
        build=_build_figures,
    ),
)


def _build_kept_tracks(run, stream) -> None:  # type: ignore[no-untyped-def]
    from agent.centre.store.kept_tracks import KeptTracks

    KeptTracks(run, stream).rebuild()


# What agent.centre.store.kept_tracks keeps (its docstring says what each table holds).
_KEPT_TRACKS = (
    "CREATE TABLE kept_dirty (device {text} NOT NULL, block {bigint} NOT NULL, PRIMARY KEY (device, block))",
    "CREATE TABLE track_pieces (device {text} NOT NULL, first_seq {bigint} NOT NULL, last_seq {bigint} NOT NULL,"
    " points {bigint} NOT NULL, first_day {text} NOT NULL, last_day {text} NOT NULL, first_time {text} NOT NULL,"
    " last_time {text} NOT NULL, length_m {real} NOT NULL, south {real}, west {real}, north {real}, east {real},"
    " PRIMARY KEY (device, first_seq))",
    "CREATE TABLE track_lines (device {text} NOT NULL, first_seq {bigint} NOT NULL, zoom {int} NOT NULL,"
    " points {bigint} NOT NULL, line {text} NOT NULL, PRIMARY KEY (device, first_seq, zoom))",
    "CREATE INDEX track_lines_by_zoom ON track_lines (zoom, device, first_seq)",
    "CREATE TABLE blank_runs (device {text} NOT NULL, first_seq {bigint} NOT NULL, closed_at {bigint},"
    " operator {text} NOT NULL, no_service {bigint} NOT NULL, bridged {bigint} NOT NULL, first_time {text} NOT NULL,"
    " first_day {text} NOT NULL, last_day {text} NOT NULL, south {real} NOT NULL, west {real} NOT NULL, north {real} NOT NULL,"
    " east {real} NOT NULL, length_m {real} NOT NULL, points {text}, PRIMARY KEY (device, first_seq))",
    "CREATE TABLE blank_lines (device {text} NOT NULL, first_seq {bigint} NOT NULL, zoom {int} NOT NULL,"
    " points {bigint} NOT NULL, line {text} NOT NULL, PRIMARY KEY (device, first_seq, zoom))",
    "CREATE TABLE kept_tags (device {text} NOT NULL, seq {bigint} NOT NULL, time {text} NOT NULL,"
    " day {text} NOT NULL, lat {real} NOT NULL, lon {real} NOT NULL, name {text} NOT NULL,"
    " PRIMARY KEY (device, seq))",
    "CREATE TABLE kept_unreadable (device {text} NOT NULL, seq {bigint} NOT NULL, reason {text} NOT NULL,"
    " PRIMARY KEY (device, seq))",
)

MIGRATIONS += (
    Step(
        5,
        "tracks, blank-spot segments and tagged spots kept per unit as readings arrive",
        sqlite=tuple(q.format(**_SQLITE_TYPES) for q in _KEPT_TRACKS),
        postgres=tuple(q.format(**_PG_TYPES) for q in _KEPT_TRACKS),
        build=_build_kept_tracks,
    ),
)

# Step 6 computes every figure again, not only the totals: the
# figures of step 4 did not count the quality classes per radio technology.
_TOTALS = (
    "CREATE TABLE cell_totals (cell {text} NOT NULL, operator {text} NOT NULL, samples {bigint} NOT NULL,"
    " no_service {bigint} NOT NULL, no_answer {bigint} NOT NULL, latency_samples {bigint} NOT NULL,"
    " throughput_samples {bigint} NOT NULL, trusted {bigint} NOT NULL, unsynced {bigint} NOT NULL,"
    " first_trusted {text}, last_trusted {text}, first_unsynced {text}, last_unsynced {text},"
    " histograms {text} NOT NULL, devices {text} NOT NULL, PRIMARY KEY (cell, operator))",
)

MIGRATIONS += (
    Step(
        6,
        "coverage totals per cell and operator over every day and unit; quality per radio technology",
        sqlite=tuple(q.format(**_SQLITE_TYPES) for q in _TOTALS),
        postgres=tuple(q.format(**_PG_TYPES) for q in _TOTALS),
        build=lambda run, stream: _build_figures(run, stream, totals=True),
    ),
)

# Step 7: the figures of each day and month per cell and operator, summed after a quiet
# moment (a range of days reads them instead of every key); periods_dirty holds, per day or
# month and collector, how many commits changed its keys since it was last summed.
_PERIODS = (
    "CREATE TABLE cell_periods (period {text} NOT NULL, cell {text} NOT NULL, operator {text} NOT NULL,"
    " samples {bigint} NOT NULL, no_service {bigint} NOT NULL, no_answer {bigint} NOT NULL,"
    " latency_samples {bigint} NOT NULL, throughput_samples {bigint} NOT NULL, trusted {bigint} NOT NULL,"
    " unsynced {bigint} NOT NULL, first_trusted {text}, last_trusted {text}, first_unsynced {text},"
    " last_unsynced {text}, histograms {text} NOT NULL, devices {text} NOT NULL, PRIMARY KEY (period, cell, operator))",
    "CREATE TABLE periods_dirty (period {text} NOT NULL, collector {text} NOT NULL, n {bigint} NOT NULL,"
    " PRIMARY KEY (period, collector))",
    # Every day and month of an existing database is summed by the collector after its first
    # quiet moments; until then a range reads their keys, as before.
    "INSERT INTO periods_dirty (period, collector, n) SELECT DISTINCT day, '', 1 FROM cell_stats"
    " UNION SELECT DISTINCT substr(day, 1, 7), '', 1 FROM cell_stats",
)

MIGRATIONS += (
    Step(
        7,
        "coverage figures per cell, operator, day and month over every unit, summed after a quiet moment",
        sqlite=tuple(q.format(**_SQLITE_TYPES) for q in _PERIODS),
        postgres=tuple(q.format(**_PG_TYPES) for q in _PERIODS),
    ),
)

# Step 8: blankspot.reading/2 carries MCC and MNC as strings of digits ("510", "01"), which an
# integer column cannot keep: SQLite's INTEGER affinity and PostgreSQL's integer make "01" 1,
# and 310-026 one network with 310-26.  The columns become text, each existing row's codes
# written as blankspot.reading/1 is read (agent.shared.operators.codes_of_numbers): three
# digits for the MCC; for the MNC three in the countries of three-digit MNCs or from 100 on,
# else two; both NULL where they named no network.  That is how coverage keys were already
# written, so the figures, the operator names and the kept tracks stay as they are.  The
# home registrations of reading/2 (SMS only, CSFB not preferred, at home) join the partial
# index the home operators are read from.
#
# What it costs: the table is written once more, in one transaction.  PostgreSQL rewrites
# the table and its indexes (ALTER COLUMN TYPE) under an exclusive lock: for a regency's
# year, 10 million readings and some 8 GB, several minutes of disk-bound work on an SSD and
# room for a second copy; collectors wait for it (units keep their readings meanwhile), maps
# and reports started before it hold it back.  SQLite copies the table into a new one (the
# file grows by the table's size until a VACUUM) and builds its three indexes again; for an
# office's database of a few hundred thousand readings, seconds.  Adding text columns beside
# the integers instead would write every row too (an UPDATE), leave two sets of codes, and
# bloat PostgreSQL's table until a VACUUM.
_CODES_VALID = "mcc BETWEEN 1 AND 999 AND mnc BETWEEN 0 AND 999"
_THREE_DIGIT = "mcc IN (302, 310, 311, 312, 313, 314, 315, 316, 334, 338, 722, 732) OR mnc >= 100"
_HOME_INDEX = ("CREATE INDEX readings_home ON readings (device, seq) WHERE kind = 'signal'"
               " AND registration IN ('csfb_not_preferred_home', 'home', 'sms_only_home')")
_READING_COLUMNS_8 = (
    "device", "seq", "time", "time_source", "kind", "lat", "lon", "fix", "registration", "operator", "mcc", "mnc",
    "rat", "band", "cell_id", "rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db", "quality", "error", "rtt_avg_ms",
    "loss_pct", "down_mbps", "up_mbps", "event_type", "event_message", "body", "received_at", "cell", "counts_for",
)
_SQLITE_CODES = {
    "mcc": f"CASE WHEN typeof(mcc) = 'integer' AND typeof(mnc) = 'integer' AND {_CODES_VALID}"
           " THEN printf('%03d', mcc) END",
    "mnc": f"CASE WHEN typeof(mcc) = 'integer' AND typeof(mnc) = 'integer' AND {_CODES_VALID}"
           f" THEN printf(CASE WHEN {_THREE_DIGIT} THEN '%03d' ELSE '%02d' END, mnc) END",
}

MIGRATIONS += (
    Step(
        8,
        "MCC and MNC as the digits broadcast (blankspot.reading/2); its home registrations in the home index",
        sqlite=(
            # The table of steps 1 and 4, mcc and mnc TEXT, its columns in the same order.
            "CREATE TABLE readings_8 ("
            " device TEXT NOT NULL, seq INTEGER NOT NULL, time TEXT NOT NULL, time_source TEXT NOT NULL,"
            " kind TEXT NOT NULL, lat REAL, lon REAL, fix TEXT, registration TEXT, operator TEXT, mcc TEXT,"
            " mnc TEXT, rat TEXT, band INTEGER, cell_id INTEGER, rssi_dbm REAL, rsrp_dbm REAL, rsrq_db REAL,"
            " sinr_db REAL, quality TEXT, error TEXT, rtt_avg_ms REAL, loss_pct REAL, down_mbps REAL, up_mbps REAL,"
            " event_type TEXT, event_message TEXT, body TEXT NOT NULL, received_at TEXT NOT NULL, cell TEXT,"
            " counts_for TEXT, PRIMARY KEY (device, seq))",
            f"INSERT INTO readings_8 ({', '.join(_READING_COLUMNS_8)})"
            f" SELECT {', '.join(_SQLITE_CODES.get(c, c) for c in _READING_COLUMNS_8)} FROM readings",
            "DROP TABLE readings",
            "ALTER TABLE readings_8 RENAME TO readings",
            "CREATE INDEX readings_by_kind ON readings (kind, device, seq)",
            "CREATE INDEX readings_by_time ON readings (time)",
            _HOME_INDEX,
        ),
        postgres=(
            "DROP INDEX readings_home",
            "ALTER TABLE readings"
            f" ALTER COLUMN mcc TYPE text USING CASE WHEN {_CODES_VALID} THEN lpad(mcc::text, 3, '0') END,"
            f" ALTER COLUMN mnc TYPE text USING CASE WHEN {_CODES_VALID}"
            f" THEN lpad(mnc::text, CASE WHEN {_THREE_DIGIT} THEN 3 ELSE 2 END, '0') END",
            _HOME_INDEX,
        ),
    ),
)

# Step 9: what the SMS gateway reads (agent.centre.store.sms_kept says what each table holds).
_SMS = (
    "CREATE TABLE unit_heartbeats (device {text} PRIMARY KEY, counter {bigint} NOT NULL, time {text} NOT NULL,"
    " received_at {text} NOT NULL, sender {text} NOT NULL, source {text} NOT NULL, fields {text} NOT NULL)",
    "CREATE TABLE sms_refused (reason {text} PRIMARY KEY, n {bigint} NOT NULL, last_at {text} NOT NULL)",
)
_SMS_LOG = ("sender {text} NOT NULL, reason {text} NOT NULL, coding {text} NOT NULL, text {text} NOT NULL,"
            " received_at {text} NOT NULL")

MIGRATIONS += (
    Step(
        9,
        "heartbeats received by SMS, the highest counter accepted per unit, SMS refused by reason",
        sqlite=tuple(q.format(**_SQLITE_TYPES) for q in _SMS)
        + ("CREATE TABLE sms_log (id INTEGER PRIMARY KEY AUTOINCREMENT, " + _SMS_LOG.format(**_SQLITE_TYPES) + ")",),
        postgres=tuple(q.format(**_PG_TYPES) for q in _SMS)
        + ("CREATE TABLE sms_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
           + _SMS_LOG.format(**_PG_TYPES) + ")",),
    ),
)

LATEST = MIGRATIONS[-1].version


def has_ledger(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps the seq ledger (a store held at an older
    schema, as a test of upgrades does, stores readings without it)."""
    return any(step.version == 3 for step in steps)


def has_figures(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps the coverage figures as readings arrive."""
    return any(step.version == 4 for step in steps)


def has_kept_tracks(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps tracks, segments and tags per unit."""
    return any(step.version == 5 for step in steps)


def has_totals(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps the coverage totals per cell and operator."""
    return any(step.version == 6 for step in steps)


def has_periods(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps the coverage figures per day and month."""
    return any(step.version == 7 for step in steps)


def has_text_codes(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps MCC and MNC as text (an older one keeps
    integers, which lose an MNC's zeros)."""
    return any(step.version == 8 for step in steps)


def has_sms(steps: tuple[Step, ...]) -> bool:
    """Whether a database built by ``steps`` keeps the heartbeats and refusals of SMS."""
    return any(step.version == 9 for step in steps)


VERSION_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version ("
              " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
    "postgres": "CREATE TABLE IF NOT EXISTS schema_version ("
                " version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL)",
}
