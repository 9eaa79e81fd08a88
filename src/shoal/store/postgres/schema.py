"""The PostgreSQL store's schema and statements (see :mod:`shoal.store.postgres`), and
its migration: made by the first worker under an advisory lock, so that workers starting
together do not race; its version kept in ``shoal_schema``."""

from __future__ import annotations

from typing import Any

from shoal.errors import JournalError

#: Each version's changes, applied in order: a new database runs ``SCHEMA`` (version 1)
#: and then every one of them, a database at version N the ones after N.
MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE shoal_jobs ADD COLUMN IF NOT EXISTS paused boolean NOT NULL DEFAULT false;
ALTER TABLE shoal_workers ADD COLUMN IF NOT EXISTS hosts integer NOT NULL DEFAULT 0;
""",
}
SCHEMA_VERSION = max(MIGRATIONS)
#: The advisory lock that serialises schema migrations (any 64-bit number of our own).
SCHEMA_LOCK = 0x73686F616C  # "shoal"
SCHEMA = """
CREATE TABLE IF NOT EXISTS shoal_jobs (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    input text NOT NULL,
    fingerprint text,
    settings jsonb,
    options jsonb,
    input_items bigint NOT NULL DEFAULT 0,
    input_offset bigint NOT NULL DEFAULT 0,
    input_done boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE IF NOT EXISTS shoal_seq;
CREATE SEQUENCE IF NOT EXISTS shoal_done;
CREATE SEQUENCE IF NOT EXISTS shoal_tokens;
CREATE TABLE IF NOT EXISTS shoal_requests (
    job_id bigint NOT NULL,
    seq bigint NOT NULL,
    key bytea NOT NULL,
    host text NOT NULL,
    line bigint,
    spec bytea NOT NULL,
    depth integer NOT NULL DEFAULT 0,
    parent bigint,
    PRIMARY KEY (job_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS shoal_requests_key ON shoal_requests (job_id, key);
CREATE TABLE IF NOT EXISTS shoal_queue (
    job_id bigint NOT NULL,
    host text NOT NULL,
    seq bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, host, seq)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_cost_delay = 0, fillfactor = 80);
CREATE TABLE IF NOT EXISTS shoal_records (
    job_id bigint NOT NULL,
    done_seq bigint NOT NULL,
    seq bigint NOT NULL,
    failed boolean NOT NULL,
    worker text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (job_id, done_seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS shoal_records_seq ON shoal_records (job_id, seq);
CREATE TABLE IF NOT EXISTS shoal_hosts (
    job_id bigint NOT NULL,
    host text NOT NULL,
    has_work boolean NOT NULL DEFAULT true,
    owner text,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    last_owner text,
    released_at timestamptz,
    resume_at timestamptz,
    paused_until timestamptz,
    delay_s double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, host)
) WITH (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0,
        fillfactor = 70);
CREATE INDEX IF NOT EXISTS shoal_hosts_work ON shoal_hosts (job_id, host) WHERE has_work;
CREATE TABLE IF NOT EXISTS shoal_workers (
    job_id bigint NOT NULL,
    worker text NOT NULL,
    machine text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    stopped boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, worker)
);
CREATE TABLE IF NOT EXISTS shoal_tallies (
    job_id bigint NOT NULL,
    worker text NOT NULL,
    admitted bigint NOT NULL DEFAULT 0,
    ok bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, worker)
);
CREATE TABLE IF NOT EXISTS shoal_timeline (
    job_id bigint NOT NULL,
    second bigint NOT NULL,
    worker text NOT NULL,
    ok bigint NOT NULL,
    failed bigint NOT NULL,
    bytes bigint NOT NULL,
    attempts bigint NOT NULL,
    PRIMARY KEY (job_id, second, worker)
);
"""

#: New requests in, duplicates (by key) left out, each new one queued under its host;
#: ``{rows}`` is the source of (key, host, line, spec, depth, parent, ord) rows.
INSERT_REQUESTS = """
WITH new AS (
    INSERT INTO shoal_requests (job_id, seq, key, host, line, spec, depth, parent)
    SELECT $1, nextval('shoal_seq'), s.key, s.host, s.line, s.spec, s.depth, s.parent
    FROM (SELECT * FROM {rows} ORDER BY ord) AS s
    ON CONFLICT (job_id, key) DO NOTHING
    RETURNING seq, key, host
), queued AS (
    INSERT INTO shoal_queue (job_id, host, seq) SELECT $1, host, seq FROM new
)
SELECT seq, key FROM new ORDER BY seq
"""
UNNEST_ROWS = (
    "unnest($2::bytea[], $3::text[], $4::bigint[], $5::bytea[], $6::int[], $7::bigint[])"
    " WITH ORDINALITY AS u(key, host, line, spec, depth, parent, ord)"
)
STAGE = """
CREATE TEMP TABLE IF NOT EXISTS shoal_stage (
    key bytea, host text, line bigint, spec bytea, depth integer, parent bigint, ord integer
) ON COMMIT DELETE ROWS
"""
STAGE_COLUMNS = ["key", "host", "line", "spec", "depth", "parent", "ord"]
HOSTS_HAVE_WORK = """
INSERT INTO shoal_hosts (job_id, host) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING
"""
#: Unconditional, so that it waits for a host being handed on (see ``_release``).
MARK_WORK = "UPDATE shoal_hosts SET has_work = true WHERE job_id = $1 AND host = ANY($2::text[])"
FETCH = """
SELECT h.host, q.seq, r.line, r.spec, q.attempts, r.depth, p.spec
FROM unnest($2::text[], $3::bigint[], $4::int[]) AS h(host, after, n)
CROSS JOIN LATERAL (
    SELECT seq, attempts FROM shoal_queue
    WHERE job_id = $1 AND host = h.host AND seq > h.after ORDER BY seq LIMIT h.n
) AS q
JOIN shoal_requests AS r ON r.job_id = $1 AND r.seq = q.seq
LEFT JOIN shoal_requests AS p ON p.job_id = $1 AND p.seq = r.parent
ORDER BY q.seq
"""
ACQUIRE = """
WITH picked AS (
    SELECT host FROM shoal_hosts
    WHERE job_id = $1 AND has_work
      AND (owner IS NULL OR expires_at < now() - make_interval(secs => $4))
      AND (last_owner IS DISTINCT FROM $2 OR released_at IS NULL
           OR released_at <= now() - make_interval(secs => $5))
    ORDER BY host
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE shoal_hosts AS h
SET owner = $2, token = nextval('shoal_tokens'), last_owner = $2,
    expires_at = now() + make_interval(secs => $6)
FROM picked WHERE h.job_id = $1 AND h.host = picked.host
RETURNING h.host, h.token,
    GREATEST(0, EXTRACT(EPOCH FROM h.resume_at - now()))::float8,
    GREATEST(0, EXTRACT(EPOCH FROM h.paused_until - now()))::float8,
    h.delay_s
"""
RENEW = """
UPDATE shoal_hosts SET expires_at = now() + make_interval(secs => $3)
WHERE job_id = $1 AND owner = $2 AND expires_at > now()
RETURNING host, token
"""


async def migrate(connection: Any) -> None:
    """Create the schema, or bring it to this version, once: concurrent first workers wait
    for each other on the advisory lock."""
    await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
    await connection.execute("CREATE TABLE IF NOT EXISTS shoal_schema (version integer NOT NULL)")
    version = await connection.fetchval("SELECT max(version) FROM shoal_schema")
    if version is not None and version > SCHEMA_VERSION:
        raise JournalError(
            f"the database holds shoal schema {version}, newer than this shoal's"
            f" ({SCHEMA_VERSION}): upgrade shoal"
        )
    if version == SCHEMA_VERSION:
        return
    if version is None:
        await connection.execute(SCHEMA)
        version = 1
    for step in range(version + 1, SCHEMA_VERSION + 1):
        await connection.execute(MIGRATIONS[step])
    await connection.execute("INSERT INTO shoal_schema (version) VALUES ($1)", SCHEMA_VERSION)
