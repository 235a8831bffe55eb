-- Claims by type. A worker that runs only some types finds its jobs through this index when
-- the claim order's head is full of other types' jobs (core/jobs/queue.cpp, claim_once),
-- instead of reading past every one of them on each claim.
ALTER TABLE jobs ADD INDEX IF NOT EXISTS jobs_claim_type (status, type, priority DESC, run_at, seq);
