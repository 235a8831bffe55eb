#pragma once
// kiln-worker's engine: a dispatcher that claims jobs for free slots, the slots that run them,
// and the recorder that writes what became of them.
//
// Pick-up: the dispatcher sleeps in poll(2) on the wake-up socket (kiln-api sends a datagram
// after each commit) and on an eventfd the slots signal when they free up, with a timeout that
// grows from poll_min to poll_max while the queue stays empty, so jobs created by a kiln-api on
// another host (no datagram) are found within poll_max.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config.hpp"
#include "core/converters/definition.hpp"
#include "core/jobs/wakeup.hpp"
#include "core/magic/detector.hpp"
#include "core/storage/storage.hpp"
#include "core/util/fd.hpp"
#include "core/util/work_queue.hpp"
#include "worker/recorder.hpp"

namespace kiln::worker {

using Catalog = std::map<std::string, converters::Definition, std::less<>>;

class Worker {
  public:
    Worker(Config config, Catalog catalog);
    ~Worker();

    // Runs until stop() and the grace period are over. Fails when it cannot start (wake-up
    // socket, magic database).
    Result<> run();

    // Thread-safe. Stops claiming; running jobs get `grace` to finish, then are stopped and
    // released back to pending.
    void stop();
    // Thread-safe. Later claims use the new definitions.
    void reload(Catalog catalog);

    [[nodiscard]] const std::string& name() const { return name_; }

  private:
    void dispatch_loop();
    // Runs the jobs the dispatcher queues, one at a time, until the queue is closed and empty.
    void slot_loop(magic::Detector& detector);
    void claim(std::size_t wanted);
    Result<> release_unsure_claims(db::Connection& conn);
    std::vector<std::string> claimable_types();
    void signal_dispatcher();

    Config config_;
    std::string name_;
    storage::Storage storage_;
    std::mutex catalog_mutex_;
    std::shared_ptr<const Catalog> catalog_;

    db::Session session_;  // the dispatcher's
    // Lease tokens of claims that failed as their connection broke: if it broke at COMMIT, the
    // claim may have been applied, and its jobs are handed back before the next claim. Only
    // the dispatcher's thread uses it.
    std::vector<std::string> unsure_claims_;
    Recorder recorder_;
    std::optional<jobs::WakeupListener> wakeup_;
    util::UniqueFd event_fd_;

    // Jobs claimed, waiting for a slot or running in one; closed by stop().
    util::WorkQueue<std::shared_ptr<RunningJob>> queue_;
    // Moving average of how long jobs take here. Very short jobs make claiming the bottleneck,
    // so the dispatcher then claims ahead of free slots (see dispatch_loop).
    std::atomic<double> average_run_ms_{1000.0};
    std::mutex mutex_;  // guards what follows
    std::map<std::uint64_t, std::shared_ptr<RunningJob>> active_;
    bool stopping_ = false;
    std::chrono::steady_clock::time_point stop_deadline_{};
};

}  // namespace kiln::worker
