-- kiln schema v1. Times are UTC DATETIME(3); public ids are opaque random strings, the
-- AUTO_INCREMENT seq is internal (ordering, keyset pagination, foreign keys).

CREATE TABLE IF NOT EXISTS tokens (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    token_sha256 CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    owner        VARCHAR(64) NOT NULL,
    is_admin     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   DATETIME(3) NOT NULL,
    revoked_at   DATETIME(3) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY tokens_sha256 (token_sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS jobs (
    seq              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    id               CHAR(26) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    owner            VARCHAR(64) NOT NULL,
    type             VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status           ENUM('pending', 'running', 'completed', 'failed', 'cancelled') NOT NULL,
    -- 0..100, higher runs first: batch = 10, standard = 50, premium = 90.
    priority         TINYINT UNSIGNED NOT NULL,
    params           LONGTEXT NOT NULL CHECK (JSON_VALID(params)),
    progress         TINYINT UNSIGNED NOT NULL DEFAULT 0,
    step             VARCHAR(128) NULL,
    attempts         INT UNSIGNED NOT NULL DEFAULT 0,
    max_attempts     INT UNSIGNED NOT NULL,
    error            TEXT NULL,
    -- not before: the claim order's tie-breaker and the retry back-off's due time.
    run_at           DATETIME(3) NOT NULL,
    worker           VARCHAR(128) NULL,
    lease_token      CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    lease_expires_at DATETIME(3) NULL,
    created_at       DATETIME(3) NOT NULL,
    started_at       DATETIME(3) NULL,
    finished_at      DATETIME(3) NULL,
    updated_at       DATETIME(3) NOT NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY jobs_id (id),
    -- The claim: WHERE status = 'pending' AND run_at <= now ORDER BY priority DESC, run_at, seq.
    KEY jobs_claim (status, priority DESC, run_at, seq),
    KEY jobs_owner (owner, seq),
    KEY jobs_lease (status, lease_expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS job_files (
    job_seq       BIGINT UNSIGNED NOT NULL,
    kind          ENUM('source', 'result') NOT NULL,
    name          VARCHAR(255) NOT NULL,
    original_name VARCHAR(1024) NULL,
    size          BIGINT UNSIGNED NOT NULL,
    content_type  VARCHAR(255) NOT NULL,
    sha256        CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at    DATETIME(3) NOT NULL,
    PRIMARY KEY (job_seq, kind, name),
    CONSTRAINT job_files_job FOREIGN KEY (job_seq) REFERENCES jobs (seq) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
