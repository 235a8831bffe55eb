#include "worker/worker.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "core/jobs/queue.hpp"
#include "core/log.hpp"
#include "core/magic/detector.hpp"
#include "core/util/systemd.hpp"

namespace kiln::worker {
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::string default_name() {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    std::string name = fmt::format("{}-{}", host, getpid());
    for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '_';
    }
    return name;
}

const char* outcome_name(jobs::Outcome::Kind kind) {
    switch (kind) {
        case jobs::Outcome::Kind::completed:
            return "completed";
        case jobs::Outcome::Kind::failed:
            return "failed";
        case jobs::Outcome::Kind::released:
            return "released";
        case jobs::Outcome::Kind::cancelled:
            return "cancelled";
    }
    return "unknown";
}

// A job runner that throws (out of memory, a bug) fails that attempt, to be retried, instead of
// ending the worker with every other running job.
jobs::Outcome run_guarded(JobRunner& runner, const converters::Definition* def, RunningJob& job) {
    try {
        return runner.run(def, job);
    } catch (const std::exception& e) {
        log::error("job runner failed", {{"job", job.job().id}, {"error", e.what()}});
        return jobs::failed_attempt(
            job.job(), std::string("kiln-worker failed running the job: ") + e.what(), false);
    }
}

}  // namespace

Worker::Worker(Config config, Catalog catalog)
    : config_(std::move(config)),
      name_(config_.worker.name.empty() ? default_name() : config_.worker.name),
      storage_(config_.storage_root),
      catalog_(std::make_shared<const Catalog>(std::move(catalog))),
      session_(config_.database),
      recorder_(config_.database, name_, config_.worker.lease) {}

Worker::~Worker() = default;

void Worker::reload(Catalog catalog) {
    std::lock_guard lock(catalog_mutex_);
    catalog_ = std::make_shared<const Catalog>(std::move(catalog));
}

void Worker::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
        stop_deadline_ = Clock::now() + config_.worker.grace;
    }
    queue_.close();
    signal_dispatcher();
}

void Worker::signal_dispatcher() {
    const std::uint64_t one = 1;
    if (event_fd_.valid()) {
        [[maybe_unused]] auto n = ::write(event_fd_.get(), &one, sizeof one);
    }
}

std::vector<std::string> Worker::claimable_types() {
    std::shared_ptr<const Catalog> catalog;
    {
        std::lock_guard lock(catalog_mutex_);
        catalog = catalog_;
    }
    std::vector<std::string> types;
    for (const auto& [name, def] : *catalog) {
        const auto& only = config_.worker.types;
        if (only.empty() || std::find(only.begin(), only.end(), name) != only.end()) {
            types.push_back(name);
        }
    }
    return types;
}

Result<> Worker::run() {
    auto listener = jobs::WakeupListener::open(config_.wakeup_dir, name_);
    if (!listener) return std::unexpected(listener.error());
    wakeup_.emplace(std::move(*listener));
    event_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!event_fd_.valid()) return fail_errno("eventfd", errno);
    if (auto r = storage_.ensure_layout(); !r) return r;

    // Every slot's detector is opened up front so a missing magic database fails start-up.
    auto magic_database = magic::Database::load();
    if (!magic_database) return std::unexpected(magic_database.error());
    std::vector<std::unique_ptr<magic::Detector>> detectors;
    for (unsigned i = 0; i < config_.worker.slots; ++i) {
        auto d = magic::Detector::open(*magic_database);
        if (!d) return std::unexpected(d.error());
        detectors.push_back(std::move(*d));
    }
    recorder_.start();
    std::vector<std::thread> slots;
    for (auto& d : detectors) slots.emplace_back([this, &d] { slot_loop(*d); });

    log::info("kiln-worker ready",
              {{"worker", name_}, {"slots", config_.worker.slots}, {"types", claimable_types()}});
    util::notify("READY=1");
    dispatch_loop();
    if (!unsure_claims_.empty()) {
        // No claim follows to hand these back before: do it now, rather than leave their jobs
        // to wait out the lease.
        auto released = session_.run_twice_if_lost(
            [&](db::Connection& conn) { return release_unsure_claims(conn); });
        if (!released) {
            log::warning("cannot hand back the jobs of claims whose commit got no answer",
                         {{"worker", name_}, {"error", released.error().describe()}});
        }
    }

    for (auto& t : slots) t.join();
    recorder_.finish(10s);
    log::info("kiln-worker stopped", {{"worker", name_}});
    return {};
}

void Worker::slot_loop(magic::Detector& detector) {
    JobRunner runner(storage_, RunnerLimits{}, detector);
    while (auto job = queue_.pop()) {
        std::shared_ptr<const Catalog> catalog;
        {
            std::lock_guard lock(catalog_mutex_);
            catalog = catalog_;
        }
        auto it = catalog->find((*job)->job().type);
        const auto started = Clock::now();
        jobs::Outcome outcome =
            run_guarded(runner, it == catalog->end() ? nullptr : &it->second, **job);
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
        nlohmann::json fields = {{"job", (*job)->job().id},
                                 {"type", (*job)->job().type},
                                 {"attempt", (*job)->job().attempt},
                                 {"ms", ms},
                                 {"outcome", outcome_name(outcome.kind)}};
        if (!outcome.error.empty()) fields["error"] = outcome.error.substr(0, 300);
        log::info("job finished", std::move(fields));
        average_run_ms_ = 0.9 * average_run_ms_.load() + 0.1 * static_cast<double>(ms);
        recorder_.submit(std::move(outcome));
        {
            std::lock_guard lock(mutex_);
            // Unless the job was claimed again meanwhile (Recorder::track): that run stays.
            auto entry = active_.find((*job)->job().seq);
            if (entry != active_.end() && entry->second == *job) active_.erase(entry);
        }
        queue_.done();
        signal_dispatcher();
    }
}

void Worker::claim(std::size_t wanted) {
    // Outside the lock: claiming is a database round trip.
    jobs::ClaimRequest request;
    request.worker = name_;
    request.types = claimable_types();
    request.max_jobs = static_cast<int>(std::min<std::size_t>(wanted, 64));
    request.lease = config_.worker.lease;
    if (request.types.empty()) return;
    request.lease_token = jobs::new_lease_token();
    // After a database restart the first claim finds the connection dead: claim again on a
    // fresh one at once rather than after a back-off.
    auto claimed = session_.run_twice_if_lost(
        [&](db::Connection& conn) -> Result<std::vector<jobs::ClaimedJob>> {
            if (auto r = release_unsure_claims(conn); !r) return std::unexpected(r.error());
            auto got = jobs::claim_jobs(conn, request);
            if (!got && got.error().code == ErrorCode::unavailable) {
                unsure_claims_.push_back(
                    std::exchange(request.lease_token, jobs::new_lease_token()));
            }
            return got;
        });
    if (!claimed) throw std::runtime_error(claimed.error().describe());
    for (auto& job : *claimed) {
        auto running = std::make_shared<RunningJob>(std::move(job));
        recorder_.track(running);
        {
            std::lock_guard lock(mutex_);
            active_[running->job().seq] = running;
        }
        queue_.push(running);
    }
}

Result<> Worker::release_unsure_claims(db::Connection& conn) {
    // Beyond this many (a long outage), the oldest claims' jobs wait out their lease instead.
    constexpr std::size_t max_unsure = 64;
    if (unsure_claims_.size() > max_unsure) {
        unsure_claims_.erase(unsure_claims_.begin(),
                             unsure_claims_.end() - static_cast<std::ptrdiff_t>(max_unsure));
    }
    while (!unsure_claims_.empty()) {
        auto released = jobs::release_claim(conn, unsure_claims_.back());
        // A lock wait: that claim's COMMIT is still being applied. Claim now, release later.
        if (!released && db::is_retryable(released.error())) return {};
        if (!released) return std::unexpected(released.error());
        if (*released > 0) {
            log::warning("handed back jobs of a claim whose commit got no answer",
                         {{"worker", name_}, {"jobs", *released}});
        }
        unsure_claims_.pop_back();
    }
    return {};
}

void Worker::dispatch_loop() {
    const auto poll_min = config_.worker.poll_min;
    const auto poll_max = config_.worker.poll_max;
    const auto watchdog = util::watchdog_interval();
    auto last_watchdog = Clock::now();
    auto interval = poll_min;
    // Jobs under ~20 ms (no-ops, tiny conversions) finish faster than a claim round trip:
    // claiming a batch ahead keeps the slots busy. Longer jobs claim only for free slots (plus
    // worker.prefetch), so a job never waits here while another worker is idle.
    constexpr double short_job_ms = 20.0;
    constexpr std::size_t short_job_prefetch = 48;

    while (true) {
        std::size_t free = 0;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) {
                // Jobs claimed but not started go straight back.
                for (auto& job : queue_.take_waiting()) {
                    active_.erase(job->job().seq);
                    recorder_.submit(jobs::outcome_of(job->job(), jobs::Outcome::Kind::released));
                }
                if (Clock::now() >= stop_deadline_) {
                    for (auto& [seq, job] : active_) job->stop(RunningJob::StopReason::release);
                }
                if (queue_.in_hand() == 0) return;
            } else {
                std::size_t ahead = config_.worker.prefetch;
                if (average_run_ms_.load() < short_job_ms) {
                    ahead = std::max(ahead, short_job_prefetch);
                }
                const std::size_t capacity = config_.worker.slots + ahead;
                free = capacity - std::min(capacity, queue_.load());
            }
        }

        std::chrono::milliseconds timeout = poll_max;
        if (free > 0) {
            const std::size_t before = queue_.load();
            try {
                claim(free);
                if (queue_.load() > before) {
                    interval = poll_min;
                    continue;  // more may be waiting: claim again at once while slots are free
                }
                interval = std::min(poll_max, interval * 2);
            } catch (const std::runtime_error& e) {
                log::warning("cannot claim jobs", {{"worker", name_}, {"error", e.what()}});
                interval = std::min<std::chrono::milliseconds>(std::max(interval * 2, 1000ms), 5s);
            }
            timeout = interval;
        }
        {
            std::lock_guard lock(mutex_);
            if (stopping_) timeout = std::min<std::chrono::milliseconds>(timeout, 100ms);
        }
        if (watchdog) timeout = std::min(timeout, *watchdog);

        pollfd fds[2] = {{wakeup_->fd(), POLLIN, 0}, {event_fd_.get(), POLLIN, 0}};
        ::poll(fds, 2, static_cast<int>(timeout.count()));
        if (fds[0].revents & POLLIN) {
            wakeup_->drain();
            interval = poll_min;
        }
        if (fds[1].revents & POLLIN) {
            std::uint64_t count = 0;
            [[maybe_unused]] auto n = ::read(event_fd_.get(), &count, sizeof count);
        }
        if (watchdog && Clock::now() - last_watchdog >= *watchdog) {
            util::notify("WATCHDOG=1");
            last_watchdog = Clock::now();
        }
    }
}

}  // namespace kiln::worker
