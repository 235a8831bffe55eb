#include "worker/recorder.hpp"

#include "core/jobs/control.hpp"
#include "core/log.hpp"

namespace kiln::worker {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto progress_interval = 250ms;
constexpr auto cancel_interval = 500ms;
constexpr std::size_t max_batch = 256;
}  // namespace

// Leases are renewed three times per lease (in milliseconds: a third of a 2 s lease is not 0).
std::chrono::milliseconds Recorder::renewal_interval() const {
    return std::chrono::milliseconds(lease_) / 3;
}

Recorder::Recorder(DatabaseConfig db, std::string worker, std::chrono::seconds lease)
    : session_(std::move(db)), worker_(std::move(worker)), lease_(lease) {}

Recorder::~Recorder() {
    if (thread_.joinable()) finish(0s);
}

void Recorder::start() {
    thread_ = std::thread([this] { loop(); });
}

void Recorder::finish(std::chrono::seconds patience) {
    {
        std::lock_guard lock(mutex_);
        finishing_ = true;
        give_up_at_ = Clock::now() + patience;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Recorder::track(std::shared_ptr<RunningJob> job) {
    std::lock_guard lock(mutex_);
    auto& tracked = running_[job->job().seq];
    // Claimed again while an earlier run of it is still here: that run's lease lapsed and the
    // job went back to the queue (its outcome would be discarded). Stop it, so the job never
    // runs twice at once and the earlier run does not outlast the new one's renewals.
    if (tracked && tracked != job) {
        log::warning("claimed again after its lease lapsed; stopping the earlier run",
                     {{"job", job->job().id}});
        tracked->stop(RunningJob::StopReason::release);
    }
    tracked = std::move(job);
}

void Recorder::submit(jobs::Outcome outcome) {
    {
        std::lock_guard lock(mutex_);
        // Only the run this outcome is of: a newer claim of the same job keeps its entry.
        auto it = running_.find(outcome.seq);
        if (it != running_.end() && it->second->job().lease_token == outcome.lease_token) {
            running_.erase(it);
        }
        outcomes_.push_back(std::move(outcome));
    }
    wake_.notify_all();
}

std::size_t Recorder::backlog() const {
    std::lock_guard lock(mutex_);
    return outcomes_.size();
}

void Recorder::loop() {
    auto next_progress = Clock::now() + progress_interval;
    auto next_cancel_check = Clock::now() + cancel_interval;
    auto next_renewal = Clock::now() + renewal_interval();
    auto backoff = 100ms;
    while (true) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait_until(lock, std::min({next_progress, next_cancel_check, next_renewal}),
                             [&] { return !outcomes_.empty() || finishing_; });
            if (finishing_ && (outcomes_.empty() || Clock::now() >= give_up_at_)) {
                if (!outcomes_.empty()) {
                    log::error("outcomes not recorded: database unavailable",
                               {{"count", outcomes_.size()}});
                }
                return;
            }
        }
        bool ok = record_batch();
        const auto now = Clock::now();
        if (ok && now >= next_progress) {
            write_progress();
            next_progress = now + progress_interval;
        }
        if (ok && now >= next_cancel_check) {
            check_cancellations();
            next_cancel_check = now + cancel_interval;
        }
        if (ok && now >= next_renewal) {
            renew_leases();
            reap();
            next_renewal = now + renewal_interval();
        }
        if (ok) {
            backoff = 100ms;
        } else {
            // The database is down: wait before the next try, but wake for shutdown.
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, backoff,
                           [&] { return finishing_ && Clock::now() >= give_up_at_; });
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
        }
    }
}

bool Recorder::record_batch() {
    std::vector<jobs::Outcome> batch;
    {
        std::lock_guard lock(mutex_);
        while (!outcomes_.empty() && batch.size() < max_batch) {
            batch.push_back(std::move(outcomes_.front()));
            outcomes_.pop_front();
        }
    }
    if (batch.empty()) return true;
    auto conn = session_.get();
    Result<std::vector<bool>> applied =
        conn ? jobs::record_outcomes(**conn, batch) : std::unexpected(conn.error());
    if (!applied && applied.error().code != ErrorCode::unavailable) {
        // Not the connection: the database refused something of one outcome. Recorded one by
        // one, that outcome cannot hold back the others, nor itself for ever.
        return record_one_by_one(std::move(batch));
    }
    if (!applied) {
        requeue(std::move(batch), applied.error());
        return false;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (!(*applied)[i]) {
            log::warning("lease lost; outcome discarded", {{"job", batch[i].id}});
        }
    }
    return true;
}

bool Recorder::record_one_by_one(std::vector<jobs::Outcome> batch) {
    // The outcomes from the i-th on go back to the queue: the connection is lost.
    auto requeue_from = [&](std::size_t i, const Error& error) {
        requeue({std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i)),
                 std::make_move_iterator(batch.end())},
                error);
        return false;
    };
    for (std::size_t i = 0; i < batch.size(); ++i) {
        auto conn = session_.get();
        if (!conn) return requeue_from(i, conn.error());
        auto applied = jobs::record_outcomes(**conn, {batch[i]});
        if (applied) {
            if (!applied->front()) {
                log::warning("lease lost; outcome discarded", {{"job", batch[i].id}});
            }
            continue;
        }
        if (applied.error().code == ErrorCode::unavailable) {
            return requeue_from(i, applied.error());
        }
        // The attempt ends failed with the reason it could not be recorded, which the
        // database takes; if it refuses even that, the lease runs out and the reaper decides.
        log::error("the database refused a job's outcome; recording the attempt as failed",
                   {{"job", batch[i].id}, {"error", applied.error().describe()}});
        jobs::Outcome failed;
        failed.kind = jobs::Outcome::Kind::failed;
        failed.seq = batch[i].seq;
        failed.id = batch[i].id;
        failed.lease_token = batch[i].lease_token;
        failed.attempt = batch[i].attempt;
        failed.max_attempts = batch[i].max_attempts;
        failed.retry_delay = batch[i].retry_delay;
        failed.error =
            "kiln-worker could not record this attempt's outcome: " + applied.error().describe();
        auto again = jobs::record_outcomes(**conn, {failed});
        if (!again && again.error().code == ErrorCode::unavailable) {
            return requeue_from(i, again.error());
        }
        if (!again) {
            log::error("outcome not recorded; the job's lease will expire",
                       {{"job", batch[i].id}, {"error", again.error().describe()}});
        }
    }
    return true;
}

void Recorder::requeue(std::vector<jobs::Outcome> batch, const Error& error) {
    session_.note(error);
    log::warning("cannot record outcomes yet",
                 {{"error", error.describe()}, {"count", batch.size()}});
    std::lock_guard lock(mutex_);
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) outcomes_.push_front(std::move(*it));
}

std::vector<std::shared_ptr<RunningJob>> Recorder::running_jobs() const {
    std::lock_guard lock(mutex_);
    std::vector<std::shared_ptr<RunningJob>> jobs;
    for (const auto& [seq, job] : running_) jobs.push_back(job);
    return jobs;
}

void Recorder::write_progress() {
    const auto jobs = running_jobs();
    auto conn = session_.get();
    if (!conn) return;
    for (const auto& job : jobs) {
        int percent = 0;
        std::string step;
        if (!job->take_progress(percent, step)) continue;
        auto r =
            jobs::record_progress(**conn, job->job().seq, job->job().lease_token, percent, step);
        if (!r) {
            session_.note(r.error());
            return;
        }
        if (!*r) job->stop(RunningJob::StopReason::release);  // someone else owns it now
    }
}

void Recorder::renew_leases() {
    const auto jobs = running_jobs();
    auto conn = session_.get();
    if (!conn) return;
    for (const auto& job : jobs) {
        auto r = jobs::renew_lease(**conn, job->job().seq, job->job().lease_token, lease_);
        if (!r) {
            session_.note(r.error());
            return;
        }
        if (!*r) {
            log::warning("lease lost; stopping the job", {{"job", job->job().id}});
            job->stop(RunningJob::StopReason::release);
        }
    }
}

void Recorder::check_cancellations() {
    {
        std::lock_guard lock(mutex_);
        if (running_.empty()) return;
    }
    auto conn = session_.get();
    if (!conn) return;
    auto seqs = jobs::cancel_requests(**conn, worker_);
    if (!seqs) {
        session_.note(seqs.error());
        return;
    }
    std::lock_guard lock(mutex_);
    for (auto seq : *seqs) {
        if (auto it = running_.find(seq); it != running_.end()) {
            it->second->stop(RunningJob::StopReason::cancel);
        }
    }
}

void Recorder::reap() {
    auto conn = session_.get();
    if (!conn) return;
    auto reaped = jobs::reap_expired_leases(**conn);
    if (!reaped) {
        session_.note(reaped.error());
        return;
    }
    if (*reaped > 0) log::warning("reaped jobs with expired leases", {{"count", *reaped}});
}

}  // namespace kiln::worker
