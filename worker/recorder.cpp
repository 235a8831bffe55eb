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
    running_[job->job().seq] = std::move(job);
}

void Recorder::submit(jobs::Outcome outcome) {
    {
        std::lock_guard lock(mutex_);
        running_.erase(outcome.seq);
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
    auto next_renewal = Clock::now() + lease_ / 3;
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
            next_renewal = now + lease_ / 3;
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
    if (!applied) {
        session_.note(applied.error());
        log::warning("cannot record outcomes yet",
                     {{"error", applied.error().describe()}, {"count", batch.size()}});
        std::lock_guard lock(mutex_);
        for (auto it = batch.rbegin(); it != batch.rend(); ++it)
            outcomes_.push_front(std::move(*it));
        return false;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (!(*applied)[i]) {
            log::warning("lease lost; outcome discarded", {{"job", batch[i].id}});
        }
    }
    return true;
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
