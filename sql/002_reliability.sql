-- Cancellation of running jobs, idempotent creation, and the indexes purge and the reaper use.

-- Set by POST /cancel on a running job; its worker sees it within a second and kills it.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;

-- Files keep the order they were uploaded (or declared) in: {input} is the first one.
ALTER TABLE job_files ADD COLUMN IF NOT EXISTS ordinal SMALLINT UNSIGNED NOT NULL DEFAULT 0;

-- Purge: finished jobs by age.
ALTER TABLE jobs ADD INDEX IF NOT EXISTS jobs_finished (status, finished_at);

-- Idempotency-Key: one row per (owner, key) for 24 h; request_sha256 fingerprints the request
-- so the same key with a different request is told apart.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner          VARCHAR(64) NOT NULL,
    idem_key       VARCHAR(255) NOT NULL,
    request_sha256 CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    job_seq        BIGINT UNSIGNED NOT NULL,
    created_at     DATETIME(3) NOT NULL,
    PRIMARY KEY (owner, idem_key),
    KEY idempotency_created (created_at),
    CONSTRAINT idempotency_job FOREIGN KEY (job_seq) REFERENCES jobs (seq) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
