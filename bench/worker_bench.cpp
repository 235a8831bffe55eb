// worker_bench: the driver of bench/worker. Measures, against the private stack bench/worker
// started (MariaDB with durable commits, kiln-api behind nginx, no workers of its own):
//
//   1. baseline   20,000 pending jobs drained by the plainest SQL loop: per transaction one
//                 `SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED` and one completing UPDATE, with 4
//                 connections (and 1, on fewer jobs);
//      model      the same jobs drained with kiln's own claim_jobs() (32 per claim) and
//                 record_outcomes() from core/jobs/queue, and with a batched recording (one
//                 SELECT ... FOR UPDATE and one UPDATE per claim): what the statements cost;
//      spawn      /bin/true started and reaped in a loop by 2 threads, with fork()+execve() and
//                 with posix_spawn(): the ceiling of any converter that runs a program;
//   2. drain      20,000 pending jobs of test.noop (in-process) and test.true (spawns
//                 /bin/true) drained by real kiln-worker processes, 1 worker x 4 slots and 4
//                 workers x 4 slots, timed from the workers' start until no job is left pending
//                 or running; then every job is checked to be completed exactly once;
//   3. latency    pick-up at idle: test.noop jobs created one at a time through kiln-api
//                 (POST /api/v1/jobs) with one idle worker; pick-up = started_at - created_at of
//                 each row (both stamped on this host); then the idle worker's CPU use.
//
//   worker_bench --config KILN_TOML --worker-bin KILN_WORKER --log-dir DIR --url URL --token T
//                [--jobs N] [--prefetch P,...] [--phases baseline,model,spawn,drain,latency]
//                [--probe-claims] [...]
//
// Queue set-up (bulk multi-row INSERTs, TRUNCATE between cases) is not measured. Progress goes
// to stderr, the result table to stdout. Targets are printed as PASS/MISS, never turned into an
// exit status: the machines are shared and noisy. Exit status 1 when a case could not run.

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/db/mariadb.hpp"
#include "core/jobs/queue.hpp"
#include "core/jobs/repository.hpp"
#include "core/util/crypto.hpp"
#include "core/util/fd.hpp"
#include "core/util/time.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using kiln::db::Connection;
using kiln::db::Value;

struct Options {
    std::string config_path;
    std::string worker_bin;
    std::string log_dir;
    std::string url;
    std::string token;
    int jobs = 20000;
    int baseline_single_jobs = 5000;  // the 1-connection baseline drains this many
    unsigned prefetch = 32;
    unsigned slots = 4;
    int latency_jobs = 200;
    int latency_gap_ms = 50;
    std::vector<std::string> phases{"baseline", "model", "spawn", "drain", "latency"};
    std::vector<std::string> types{"test.noop", "test.true"};
    std::vector<int> worker_counts{1, 4};
    std::optional<int> mariadb_pid;
    bool probe_claims = false;
};

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

template <typename T>
T must(kiln::Result<T> r, std::string_view what) {
    if (!r) die(fmt::format("{}: {}", what, r.error().describe()));
    return std::move(*r);
}
void must(kiln::Result<> r, std::string_view what) {
    if (!r) die(fmt::format("{}: {}", what, r.error().describe()));
}

void progress(const std::string& line) { fmt::print(stderr, "worker_bench: {}\n", line); }

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---- CPU accounting --------------------------------------------------------------------------

// CPU time of every thread of a process, from /proc/PID/task/*/schedstat (ns, unlike the 10 ms
// ticks of /proc/PID/stat); 0 when the process is gone.
double process_cpu_seconds(int pid) {
    std::uint64_t total_ns = 0;
    std::error_code ec;
    for (const auto& task : fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
        std::ifstream in(task.path() / "schedstat");
        std::uint64_t on_cpu_ns = 0;
        if (in >> on_cpu_ns) total_ns += on_cpu_ns;
    }
    return static_cast<double>(total_ns) / 1e9;
}

// CPU time of the children a process has reaped (cutime + cstime of /proc/PID/stat): for a
// worker, the converter processes it ran.
double reaped_children_cpu_seconds(int pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos) return 0;
    std::istringstream fields(stat.substr(paren + 2));
    std::string field;
    double ticks = 0;
    // After "pid (comm) ": state is field 3; cutime and cstime are fields 16 and 17.
    for (int i = 3; i <= 17 && fields >> field; ++i) {
        if (i == 16 || i == 17) ticks += std::stod(field);
    }
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The calling process's CPU time, threads that have ended included.
double own_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Busy and total jiffies of the whole machine (first line of /proc/stat).
struct MachineCpu {
    std::uint64_t busy = 0;
    std::uint64_t total = 0;
};
MachineCpu machine_cpu() {
    std::ifstream in("/proc/stat");
    std::string cpu;
    std::uint64_t v[8] = {};
    in >> cpu;
    for (auto& x : v) in >> x;
    MachineCpu m;
    for (auto x : v) m.total += x;
    m.busy = m.total - v[3] - v[4];  // minus idle and iowait
    return m;
}
// Busy share of all cores between two samples, in "% of one core" (200 = both cores of 2).
double machine_busy_percent(const MachineCpu& a, const MachineCpu& b) {
    const double total = static_cast<double>(b.total - a.total);
    if (total <= 0) return 0;
    return 100.0 * static_cast<double>(b.busy - a.busy) / total *
           static_cast<double>(std::thread::hardware_concurrency());
}

std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    return fmt::format("{} {} {}", a, b, c);
}

// ---- Worker processes ------------------------------------------------------------------------

// One kiln-worker started by the benchmark: SIGTERM on destruction, SIGKILL if it does not stop
// in time, always reaped. Stays in the driver's process group, so bench/worker's clean-up of
// that group reaches it even if the driver dies.
class WorkerProcess final {
  public:
    static WorkerProcess start(const Options& opt, const std::string& name, const std::string& type,
                               unsigned prefetch) {
        const fs::path log = fs::path(opt.log_dir) / (name + ".log");
        std::vector<std::string> args = {opt.worker_bin,
                                         "--config",
                                         opt.config_path,
                                         "--slots",
                                         std::to_string(opt.slots),
                                         "--types",
                                         type,
                                         "--prefetch",
                                         std::to_string(prefetch),
                                         "--name",
                                         name};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 1, log.c_str(),
                                         O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        pid_t pid = 0;
        const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) die(fmt::format("posix_spawn({}): {}", opt.worker_bin, std::strerror(rc)));
        kiln::util::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        return WorkerProcess(pid, std::move(pidfd), name, log);
    }

    ~WorkerProcess() { stop(); }
    WorkerProcess(WorkerProcess&& o) noexcept
        : pid_(std::exchange(o.pid_, 0)),
          pidfd_(std::move(o.pidfd_)),
          name_(std::move(o.name_)),
          log_(std::move(o.log_)) {}
    WorkerProcess& operator=(WorkerProcess&&) = delete;
    WorkerProcess(const WorkerProcess&) = delete;
    WorkerProcess& operator=(const WorkerProcess&) = delete;

    [[nodiscard]] int pid() const { return pid_; }
    [[nodiscard]] const std::string& name() const { return name_; }
    [[nodiscard]] bool alive() const { return pid_ > 0 && !exited(0ms); }

    // TERM, then KILL after `patience`; returns the wait status (or -1 when not running).
    int stop(std::chrono::milliseconds patience = 40s) noexcept {
        if (pid_ <= 0) return -1;
        ::kill(pid_, SIGTERM);
        if (!exited(patience)) {
            ::kill(pid_, SIGKILL);
            (void)exited(10s);
        }
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = 0;
        return status;
    }

  private:
    WorkerProcess(pid_t pid, kiln::util::UniqueFd pidfd, std::string name, fs::path log)
        : pid_(pid), pidfd_(std::move(pidfd)), name_(std::move(name)), log_(std::move(log)) {}

    // Waits for the exit on the pidfd (readable once the process has exited), without reaping.
    bool exited(std::chrono::milliseconds timeout) const noexcept {
        if (!pidfd_.valid()) {
            siginfo_t info{};
            return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) ==
                       0 &&
                   info.si_pid == pid_;
        }
        pollfd p{pidfd_.get(), POLLIN, 0};
        return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
    }

    pid_t pid_;
    kiln::util::UniqueFd pidfd_;
    std::string name_;
    fs::path log_;
};

// ---- Queue set-up ----------------------------------------------------------------------------

// Empties the job tables. TRUNCATE rather than DELETE: no delete-marked index records left for
// the next case's claims to step over.
void reset_queue(Connection& admin) {
    must(admin.run_script("SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE job_files; "
                          "TRUNCATE TABLE idempotency_keys; TRUNCATE TABLE jobs; "
                          "SET FOREIGN_KEY_CHECKS = 1"),
         "truncating the job tables");
}

// Inserts `count` due pending jobs of `type` in one transaction, 500 rows per statement.
void enqueue(Connection& conn, const std::string& type, int count) {
    constexpr int rows_per_statement = 500;
    // Created a second ago, so the claim's run_at <= NOW(3) holds at once.
    const std::string ts = kiln::jobs::sql_timestamp(kiln::util::now_ms() - 1000);
    must(conn.begin(), "begin");
    for (int done = 0; done < count;) {
        const int n = std::min(rows_per_statement, count - done);
        std::string sql =
            "INSERT INTO jobs (id, owner, type, status, priority, params, max_attempts, run_at, "
            "created_at, updated_at) VALUES ";
        std::vector<Value> binds;
        binds.reserve(static_cast<std::size_t>(n) * 5);
        for (int i = 0; i < n; ++i) {
            sql += i == 0 ? "(?, 'bench', ?, 'pending', 50, '{}', 3, ?, ?, ?)"
                          : ", (?, 'bench', ?, 'pending', 50, '{}', 3, ?, ?, ?)";
            binds.emplace_back(kiln::util::new_job_id());
            binds.emplace_back(type);
            binds.emplace_back(ts);
            binds.emplace_back(ts);
            binds.emplace_back(ts);
        }
        auto stmt = must(conn.prepare(sql), "prepare insert");
        must(stmt->execute(binds), "insert jobs");
        done += n;
    }
    must(conn.commit(), "commit");
}

std::int64_t scalar(Connection& conn, std::string_view sql, std::initializer_list<Value> p = {}) {
    auto rows = must(conn.query(sql, p), sql);
    return rows.empty() ? 0 : rows[0].integer(0);
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

// What the jobs table says after a drain: every job completed exactly once?
struct Verification {
    std::int64_t completed = 0;
    std::int64_t not_completed = 0;
    std::int64_t attempts_not_one = 0;
    double row_seconds = 0;                       // first started_at .. last finished_at
    std::int64_t claims = 0;                      // distinct started_at: one per claim statement
    double in_flight_p50 = 0, in_flight_max = 0;  // finished_at - started_at, ms
    [[nodiscard]] bool ok(int expected) const {
        return completed == expected && not_completed == 0 && attempts_not_one == 0;
    }
    [[nodiscard]] std::string describe(int expected) const {
        if (ok(expected)) return fmt::format("ok: {} completed once", completed);
        return fmt::format("BAD: completed={} other={} attempts!=1: {}", completed, not_completed,
                           attempts_not_one);
    }
};

Verification verify(Connection& conn) {
    Verification v;
    v.completed = scalar(conn, "SELECT COUNT(*) FROM jobs WHERE status = 'completed'");
    v.not_completed = scalar(conn, "SELECT COUNT(*) FROM jobs WHERE status <> 'completed'");
    v.attempts_not_one = scalar(conn, "SELECT COUNT(*) FROM jobs WHERE attempts <> 1");
    v.row_seconds = static_cast<double>(scalar(
                        conn,
                        "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(started_at), MAX(finished_at)) "
                        "FROM jobs")) /
                    1e6;
    v.claims = scalar(conn, "SELECT COUNT(DISTINCT started_at) FROM jobs");
    std::vector<double> in_flight;
    for (const auto& row : must(conn.query("SELECT TIMESTAMPDIFF(MICROSECOND, started_at, "
                                           "finished_at) FROM jobs"),
                                "reading job times")) {
        in_flight.push_back(static_cast<double>(row.integer(0)) / 1000);
    }
    v.in_flight_p50 = percentile(in_flight, 0.5);
    v.in_flight_max = percentile(in_flight, 1.0);
    return v;
}

// ---- Results ---------------------------------------------------------------------------------

// Server counters whose change per job says where a drain's work goes.
struct ServerCounters {
    double statements = 0;  // prepared executions + plain queries (Questions)
    double commits = 0;     // COMMIT statements
    double log_writes = 0;  // redo log writes (each durable commit that was not grouped)
    double fsyncs = 0;      // fsyncs InnoDB issued
    double index_next = 0;  // Handler_read_next: index entries stepped over (claim scans)
};

struct CaseResult {
    std::string name;
    std::string shape;     // "4 conns", "1 x 4 slots"
    std::string prefetch;  // "-" for the baseline
    int jobs = 0;
    double wall_seconds = 0;
    Verification check;
    double worker_cpu = 0;    // s of CPU, all worker processes (or the driver's threads)
    double child_cpu = 0;     // s of CPU of the converter processes the workers ran
    double mariadb_cpu = 0;   // s of CPU of mariadbd
    double machine_busy = 0;  // % of one core, whole machine, over the run
    ServerCounters server;    // change over the run
    // --probe-claims: the claim's time and pages, InnoDB's history length
    std::vector<double> probe_ms, probe_pages, probe_history;
    bool ran = false;
    std::string note;

    [[nodiscard]] double rate() const { return wall_seconds > 0 ? jobs / wall_seconds : 0; }
    [[nodiscard]] double row_rate() const {
        return check.row_seconds > 0 ? jobs / check.row_seconds : 0;
    }
};

ServerCounters server_counters(Connection& conn) {
    auto rows = must(conn.query("SELECT VARIABLE_NAME, VARIABLE_VALUE FROM "
                                "information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN "
                                "('QUESTIONS', 'COM_COMMIT', 'INNODB_LOG_WRITES', "
                                "'INNODB_DATA_FSYNCS', 'HANDLER_READ_NEXT')"),
                     "reading the server's status counters");
    ServerCounters c;
    for (const auto& row : rows) {
        const double v = std::stod(row.text(1));
        if (row.text(0) == "QUESTIONS") c.statements = v;
        if (row.text(0) == "COM_COMMIT") c.commits = v;
        if (row.text(0) == "INNODB_LOG_WRITES") c.log_writes = v;
        if (row.text(0) == "INNODB_DATA_FSYNCS") c.fsyncs = v;
        if (row.text(0) == "HANDLER_READ_NEXT") c.index_next = v;
    }
    return c;
}

struct CpuWindow {
    CpuWindow(const Options& opt, Connection& admin)
        : opt_(opt), admin_(admin), server_(server_counters(admin)) {
        if (opt_.mariadb_pid) mariadb_ = process_cpu_seconds(*opt_.mariadb_pid);
        machine_ = machine_cpu();
    }
    void finish(CaseResult& r) const {
        if (opt_.mariadb_pid) r.mariadb_cpu = process_cpu_seconds(*opt_.mariadb_pid) - mariadb_;
        r.machine_busy = machine_busy_percent(machine_, machine_cpu());
        const auto now = server_counters(admin_);
        r.server.statements = now.statements - server_.statements;
        r.server.commits = now.commits - server_.commits;
        r.server.log_writes = now.log_writes - server_.log_writes;
        r.server.fsyncs = now.fsyncs - server_.fsyncs;
        r.server.index_next = now.index_next - server_.index_next;
    }
    const Options& opt_;
    Connection& admin_;
    ServerCounters server_;
    double mariadb_ = 0;
    MachineCpu machine_;
};

// ---- 1. Baseline -----------------------------------------------------------------------------

// Drains the queue on `threads` connections of their own, each calling `step(conn, index)` until
// it returns false (nothing left) or an error that a retry cannot mend (a deadlock or lock wait
// timeout is rolled back and retried). Measures wall time and CPU into `r`, dies on a failure,
// then verifies the queue.
template <typename Step>
void drain_on_connections(const Options& opt, const kiln::Config& cfg, Connection& admin,
                          int threads, const std::string& label, CaseResult& r, Step step) {
    std::vector<std::unique_ptr<Connection>> conns;
    for (int i = 0; i < threads; ++i) {
        conns.push_back(must(Connection::open(cfg.database), "connect"));
    }
    std::atomic<bool> failed{false};
    std::string failure;
    std::mutex failure_mutex;
    CpuWindow window(opt, admin);
    const auto self_cpu_before = own_cpu_seconds();
    const auto started = Clock::now();
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < conns.size(); ++t) {
        pool.emplace_back([&, conn = conns[t].get(), t] {
            while (!failed) {
                kiln::Result<bool> more = step(*conn, t);
                if (more && !*more) return;
                if (more) continue;
                conn->rollback();
                if (kiln::db::is_retryable(more.error())) continue;
                std::lock_guard lock(failure_mutex);
                failure = more.error().describe();
                failed = true;
            }
        });
    }
    for (auto& th : pool) th.join();
    r.wall_seconds = seconds_since(started);
    r.worker_cpu = own_cpu_seconds() - self_cpu_before;
    window.finish(r);
    if (failed) die(label + ": " + failure);
    r.check = verify(admin);
    r.ran = true;
}

// Drains the queue the plainest way: one row per transaction, `threads` connections.
CaseResult run_baseline(const Options& opt, const kiln::Config& cfg, Connection& admin, int threads,
                        int jobs) {
    CaseResult r;
    r.name = "baseline SQL loop";
    r.shape = fmt::format("{} conn{}", threads, threads == 1 ? "" : "s");
    r.prefetch = "-";
    r.jobs = jobs;
    reset_queue(admin);
    enqueue(admin, "test.noop", jobs);
    progress(fmt::format("baseline: {} jobs, {} connection(s)", jobs, threads));
    drain_on_connections(
        opt, cfg, admin, threads, "baseline", r,
        [](Connection& conn, std::size_t) -> kiln::Result<bool> {
            if (auto b = conn.begin(); !b) return std::unexpected(b.error());
            auto rows = conn.query(
                "SELECT seq FROM jobs WHERE status = 'pending' AND run_at <= NOW(3) "
                "ORDER BY priority DESC, run_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED");
            if (!rows) return std::unexpected(rows.error());
            if (rows->empty()) {
                conn.rollback();
                return false;
            }
            auto u = conn.execute(
                "UPDATE jobs SET status = 'completed', attempts = attempts + 1, "
                "started_at = NOW(3), finished_at = NOW(3), updated_at = NOW(3) WHERE seq = ?",
                {(*rows)[0].integer(0)});
            if (!u) return std::unexpected(u.error());
            if (auto c = conn.commit(); !c) return std::unexpected(c.error());
            return true;
        });
    return r;
}

// ---- 1b. SQL models of the worker's statements --------------------------------------------

std::string placeholders(std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += i == 0 ? "?" : ", ?";
    return out;
}

// Records a claim's jobs as completed in one transaction: one SELECT ... FOR UPDATE and one
// UPDATE for the whole claim (all its jobs share the claim's lease token).
kiln::Result<> record_batched(Connection& conn, const std::vector<kiln::jobs::ClaimedJob>& jobs) {
    std::vector<Value> binds{jobs.front().lease_token};
    for (const auto& j : jobs) binds.emplace_back(static_cast<std::int64_t>(j.seq));
    if (auto b = conn.begin(); !b) return std::unexpected(b.error());
    auto held_stmt = conn.prepare(
        fmt::format("SELECT seq FROM jobs WHERE lease_token = ? AND status = 'running' AND seq "
                    "IN ({}) FOR UPDATE",
                    placeholders(jobs.size())));
    if (!held_stmt) return std::unexpected(held_stmt.error());
    auto held = (*held_stmt)->query(binds);
    if (!held) return std::unexpected(held.error());
    std::vector<Value> seqs;
    for (const auto& row : *held) seqs.emplace_back(row.integer(0));
    if (!seqs.empty()) {
        auto update = conn.prepare(fmt::format(
            "UPDATE jobs SET status = 'completed', progress = 100, step = NULL, error = NULL, "
            "worker = NULL, lease_token = NULL, lease_expires_at = NULL, finished_at = NOW(3), "
            "updated_at = NOW(3) WHERE seq IN ({})",
            placeholders(seqs.size())));
        if (!update) return std::unexpected(update.error());
        if (auto u = (*update)->execute(seqs); !u) return std::unexpected(u.error());
    }
    return conn.commit();
}

// Records a claim's jobs with kiln's own record_outcomes() (two statements per job: SELECT ...
// FOR UPDATE under the lease, UPDATE).
kiln::Result<> record_per_job(Connection& conn, const std::vector<kiln::jobs::ClaimedJob>& jobs) {
    std::vector<kiln::jobs::Outcome> outcomes;
    for (const auto& j : jobs) {
        kiln::jobs::Outcome o;
        o.seq = j.seq;
        o.id = j.id;
        o.lease_token = j.lease_token;
        o.attempt = j.attempt;
        o.max_attempts = j.max_attempts;
        outcomes.push_back(std::move(o));
    }
    auto applied = kiln::jobs::record_outcomes(conn, outcomes);
    if (!applied) return std::unexpected(applied.error());
    return {};
}

// Per connection: claim up to `batch` jobs with kiln's own claim_jobs(), then record them all
// as completed, per job or batched. Claiming and recording alternate on one connection, where
// kiln-worker overlaps them on two: this isolates what the statements cost from how the worker
// schedules them.
CaseResult run_model(const Options& opt, const kiln::Config& cfg, Connection& admin, int threads,
                     bool batched, int batch) {
    CaseResult r;
    r.name = batched ? "model: batched" : "model: per-job";
    r.shape = fmt::format("{} conn{}", threads, threads == 1 ? "" : "s");
    r.prefetch = fmt::format("{}/claim", batch);
    r.jobs = opt.jobs;
    reset_queue(admin);
    enqueue(admin, "test.noop", opt.jobs);
    progress(fmt::format("model: claim {} + record {}, {} connection(s)", batch,
                         batched ? "batched" : "per job (record_outcomes)", threads));
    drain_on_connections(
        opt, cfg, admin, threads, "model", r,
        [&](Connection& conn, std::size_t index) -> kiln::Result<bool> {
            kiln::jobs::ClaimRequest request;
            request.worker = fmt::format("model-{}", index);
            request.types = {"test.noop"};
            request.max_jobs = batch;
            auto claimed = kiln::jobs::claim_jobs(conn, request);
            if (!claimed) return std::unexpected(claimed.error());
            if (claimed->empty()) return false;
            auto recorded =
                batched ? record_batched(conn, *claimed) : record_per_job(conn, *claimed);
            // Not retried: the claimed jobs would stay running under their lease.
            if (!recorded)
                return kiln::fail(kiln::ErrorCode::internal, recorded.error().describe());
            return true;
        });
    return r;
}

// ---- 1c. Process spawn baseline ------------------------------------------------------------

// How fast this machine starts and reaps /bin/true with nothing else around it: 2 threads, each
// spawning and waiting in a loop, with fork()+execve() (what core/process/child.cpp does) or
// posix_spawn() (glibc: clone(CLONE_VM | CLONE_VFORK), no copy of the parent's page tables).
// test.true cannot drain faster than this; the driver is a smaller process than kiln-worker, so
// its fork() is, if anything, cheaper.
CaseResult run_spawn(const Options& opt, Connection& admin, bool use_fork, int count) {
    CaseResult r;
    r.name = use_fork ? "spawn: fork+exec" : "spawn: posix_spawn";
    r.shape = "2 threads";
    r.prefetch = "-";
    r.jobs = count;
    progress(fmt::format("spawn baseline: {} x /bin/true with {}", count,
                         use_fork ? "fork+execve" : "posix_spawn"));
    rusage children_before{};
    ::getrusage(RUSAGE_CHILDREN, &children_before);
    CpuWindow window(opt, admin);
    const auto self_cpu_before = own_cpu_seconds();
    std::atomic<int> left{count};
    std::atomic<bool> failed{false};
    const auto started = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < 2; ++t) {
        pool.emplace_back([&] {
            char path[] = "/bin/true";
            char* argv[] = {path, nullptr};
            char* envp[] = {nullptr};
            while (left.fetch_sub(1) > 0 && !failed) {
                pid_t pid = 0;
                if (use_fork) {
                    pid = ::fork();
                    if (pid == 0) {
                        ::execve(path, argv, envp);
                        ::_exit(127);
                    }
                } else if (::posix_spawn(&pid, path, nullptr, nullptr, argv, envp) != 0) {
                    pid = -1;
                }
                int status = 0;
                if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0) {
                    failed = true;
                }
            }
        });
    }
    for (auto& th : pool) th.join();
    r.wall_seconds = seconds_since(started);
    r.worker_cpu = own_cpu_seconds() - self_cpu_before;
    rusage children_after{};
    ::getrusage(RUSAGE_CHILDREN, &children_after);
    auto seconds = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    r.child_cpu = seconds(children_after.ru_utime) + seconds(children_after.ru_stime) -
                  seconds(children_before.ru_utime) - seconds(children_before.ru_stime);
    window.finish(r);
    if (failed) die("spawn baseline: /bin/true could not be run");
    r.check.completed = count;  // nothing in the database to check
    r.ran = true;
    return r;
}

// ---- 2. Worker drains ------------------------------------------------------------------------

// The claim's ordered read as the server runs it now (kiln's claim bounds it with ROWS
// EXAMINED and, behind other types' backlog, reads type by type; not here, where every job is
// of a type the workers run): time and pages touched by that SELECT (locking,
// SKIP LOCKED, in its own autocommit transaction, so the rows it locks are free again at once),
// and InnoDB's history length. Rows a drain has moved on from stay in the claim index as
// delete-marked entries until purge removes them, and every claim walks over them.
void probe_claim(Connection& conn, CaseResult& r) {
    auto rows = conn.query(
        "ANALYZE FORMAT=JSON SELECT seq, id, owner, type, params, attempts, max_attempts FROM jobs "
        "WHERE status = 'pending' AND run_at <= NOW(3) AND FIND_IN_SET(type, ?) > 0 "
        "ORDER BY priority DESC, run_at, seq LIMIT 36 FOR UPDATE SKIP LOCKED",
        {std::string("test.noop,test.true")});
    if (!rows || rows->empty()) return;
    const auto plan = nlohmann::json::parse(rows->front().text(0), nullptr, false);
    if (plan.is_discarded()) return;
    const auto& block = plan["query_block"];
    r.probe_ms.push_back(block.value("r_total_time_ms", 0.0));
    const auto& table = block["nested_loop"][0]["table"];
    if (table.contains("r_engine_stats")) {
        r.probe_pages.push_back(table["r_engine_stats"].value("pages_accessed", 0.0));
    }
    auto history = conn.query(
        "SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = "
        "'trx_rseg_history_len'");
    if (history && !history->empty()) {
        r.probe_history.push_back(static_cast<double>(history->front().integer(0)));
    }
}

CaseResult run_drain(const Options& opt, Connection& admin, const std::string& type, int workers,
                     unsigned prefetch) {
    CaseResult r;
    r.name = type;
    r.shape = fmt::format("{} x {} slots", workers, opt.slots);
    r.prefetch = std::to_string(prefetch);
    r.jobs = opt.jobs;
    reset_queue(admin);
    enqueue(admin, type, opt.jobs);
    progress(fmt::format("drain: {} jobs of {} by {} worker(s) x {} slots, prefetch {}", opt.jobs,
                         type, workers, opt.slots, prefetch));

    CpuWindow window(opt, admin);
    const auto started = Clock::now();
    std::vector<WorkerProcess> procs;
    for (int i = 1; i <= workers; ++i) {
        procs.push_back(WorkerProcess::start(
            opt, fmt::format("bench-{}-{}x{}-p{}-w{}", type, workers, opt.slots, prefetch, i), type,
            prefetch));
    }
    // Done when nothing is pending or running. The 50 ms poll asks only whether one such row
    // exists (one index lookup); counting them, for the stall check, happens every 5 s.
    std::int64_t last_left = opt.jobs;
    auto last_change = Clock::now();
    auto next_count = Clock::now() + 5s;
    auto next_probe = Clock::now() + 500ms;
    while (true) {
        std::this_thread::sleep_for(50ms);
        if (opt.probe_claims && Clock::now() >= next_probe) {
            next_probe = Clock::now() + 500ms;
            probe_claim(admin, r);
        }
        if (scalar(admin,
                   "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE status IN "
                   "('pending', 'running') LIMIT 1) AS t") == 0) {
            break;
        }
        for (auto& p : procs) {
            if (!p.alive())
                die(fmt::format("{} exited during the drain (log in {})", p.name(), opt.log_dir));
        }
        if (Clock::now() >= next_count) {
            next_count = Clock::now() + 5s;
            const auto left =
                scalar(admin, "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')");
            if (left != last_left) {
                last_left = left;
                last_change = Clock::now();
            } else if (Clock::now() - last_change > 60s) {
                r.note = fmt::format("stalled with {} jobs left", left);
                break;
            }
        }
    }
    r.wall_seconds = seconds_since(started);
    for (auto& p : procs) {
        r.worker_cpu += process_cpu_seconds(p.pid());
        r.child_cpu += reaped_children_cpu_seconds(p.pid());
    }
    window.finish(r);
    for (auto& p : procs) {
        const int status = p.stop();
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            r.note += fmt::format("{} ended with wait status {}; ", p.name(), status);
        }
    }
    r.check = verify(admin);
    r.ran = r.note.empty();
    return r;
}

// ---- 3. Pick-up latency ----------------------------------------------------------------------

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::size_t append_body(char* data, std::size_t size, std::size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
}

// POSTs a JSON job through nginx and kiln-api on one kept-alive connection.
class JobPoster final {
  public:
    JobPoster(const std::string& url, const std::string& token)
        : curl_(curl_easy_init()), url_(url + "/api/v1/jobs") {
        if (!curl_) die("curl_easy_init failed");
        curl_slist* list = curl_slist_append(nullptr, ("Authorization: Bearer " + token).c_str());
        list = curl_slist_append(list, "Content-Type: application/json");
        headers_.reset(list);
    }
    // The new job's id; throws on any answer but 201.
    std::string create(const std::string& body) {
        std::string response;
        curl_easy_setopt(curl_.get(), CURLOPT_URL, url_.c_str());
        curl_easy_setopt(curl_.get(), CURLOPT_HTTPHEADER, headers_.get());
        curl_easy_setopt(curl_.get(), CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(curl_.get(), CURLOPT_WRITEFUNCTION, append_body);
        curl_easy_setopt(curl_.get(), CURLOPT_WRITEDATA, &response);
        curl_easy_setopt(curl_.get(), CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(curl_.get(), CURLOPT_NOSIGNAL, 1L);
        const CURLcode rc = curl_easy_perform(curl_.get());
        if (rc != CURLE_OK) die(std::string("POST /api/v1/jobs: ") + curl_easy_strerror(rc));
        long status = 0;
        curl_easy_getinfo(curl_.get(), CURLINFO_RESPONSE_CODE, &status);
        if (status != 201) die(fmt::format("POST /api/v1/jobs: HTTP {}: {}", status, response));
        return nlohmann::json::parse(response).at("id").get<std::string>();
    }

  private:
    std::unique_ptr<CURL, CurlDeleter> curl_;
    std::unique_ptr<curl_slist, SlistDeleter> headers_;
    std::string url_;
};

struct LatencyResult {
    bool ran = false;
    int jobs = 0;
    double pickup_p50 = NAN, pickup_p99 = NAN, pickup_max = NAN;
    double finish_p50 = NAN, finish_p99 = NAN;
    double post_p50 = NAN, post_p99 = NAN;  // client-side POST round trip
    // started_at - the moment the POST's answer arrived: a lower bound of the worker's share
    // (the row was committed before kiln-api answered), where created_at gives an upper bound.
    double answered_p50 = NAN, answered_p99 = NAN;
    double idle_cpu_percent = NAN;
    double idle_seconds = 0;
};

LatencyResult run_latency(const Options& opt, const kiln::Config& cfg, Connection& admin) {
    LatencyResult r;
    reset_queue(admin);
    const std::string name = "bench-latency";
    WorkerProcess worker = WorkerProcess::start(opt, name, "test.noop", 0);
    // Ready once its wake-up socket exists; then more than a second, because each kiln-api
    // thread caches the list of worker sockets for a second.
    const fs::path sock = cfg.wakeup_dir / (name + ".sock");
    const auto deadline = Clock::now() + 30s;
    while (!fs::exists(sock)) {
        if (!worker.alive() || Clock::now() > deadline) die("the latency worker did not start");
        std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(1500ms);
    progress(fmt::format("latency: {} test.noop jobs through {} one every {} ms, 1 idle worker",
                         opt.latency_jobs, opt.url, opt.latency_gap_ms));

    JobPoster poster(opt.url, opt.token);
    std::map<std::string, std::int64_t> answered_at;  // id -> ms since the epoch
    std::vector<double> post_ms;
    for (int i = 0; i < opt.latency_jobs; ++i) {
        const auto t = Clock::now();
        const std::string id = poster.create(R"({"type":"test.noop"})");
        answered_at[id] = kiln::util::now_ms();
        post_ms.push_back(seconds_since(t) * 1000);
        std::this_thread::sleep_for(std::chrono::milliseconds(opt.latency_gap_ms));
    }
    const auto wait_until = Clock::now() + 30s;
    while (scalar(admin, "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')") > 0) {
        if (Clock::now() > wait_until) die("latency jobs did not finish within 30 s");
        std::this_thread::sleep_for(50ms);
    }

    // Idle CPU: the worker has nothing to do and backs its polling off.
    std::this_thread::sleep_for(1s);
    const double cpu_before = process_cpu_seconds(worker.pid());
    const auto idle_start = Clock::now();
    std::this_thread::sleep_for(5s);
    r.idle_seconds = seconds_since(idle_start);
    r.idle_cpu_percent = 100.0 * (process_cpu_seconds(worker.pid()) - cpu_before) / r.idle_seconds;
    worker.stop();

    std::vector<double> pickup, finish, answered;
    auto rows = must(admin.query("SELECT id, TIMESTAMPDIFF(MICROSECOND, created_at, started_at), "
                                 "TIMESTAMPDIFF(MICROSECOND, created_at, finished_at), status, "
                                 "attempts, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', started_at) "
                                 "FROM jobs"),
                     "reading latency rows");
    for (const auto& row : rows) {
        if (row.text(3) != "completed" || row.integer(4) != 1) {
            die(fmt::format("latency job {} is {} after {} attempts", row.text(0), row.text(3),
                            row.integer(4)));
        }
        pickup.push_back(static_cast<double>(row.integer(1)) / 1000);
        finish.push_back(static_cast<double>(row.integer(2)) / 1000);
        if (auto it = answered_at.find(row.text(0)); it != answered_at.end()) {
            answered.push_back(static_cast<double>(row.integer(5)) / 1000 -
                               static_cast<double>(it->second));
        }
    }
    if (rows.size() != answered_at.size() || answered.size() != rows.size()) {
        die("latency: job rows missing");
    }
    r.jobs = static_cast<int>(rows.size());
    r.pickup_p50 = percentile(pickup, 0.50);
    r.pickup_p99 = percentile(pickup, 0.99);
    r.pickup_max = percentile(pickup, 1.0);
    r.finish_p50 = percentile(finish, 0.50);
    r.finish_p99 = percentile(finish, 0.99);
    r.post_p50 = percentile(post_ms, 0.50);
    r.post_p99 = percentile(post_ms, 0.99);
    r.answered_p50 = percentile(answered, 0.50);
    r.answered_p99 = percentile(answered, 0.99);
    r.ran = true;
    return r;
}

// ---- Report ----------------------------------------------------------------------------------

const char* verdict(bool pass) { return pass ? "PASS" : "MISS"; }

void report(const Options& opt, const std::vector<CaseResult>& cases,
            const std::optional<LatencyResult>& latency, const std::string& load_before) {
    fmt::print(
        "\nkiln worker benchmark: {} jobs per drain, {} slots per worker, {} CPUs, "
        "load average before {} / after {}\n",
        opt.jobs, opt.slots, std::thread::hardware_concurrency(), load_before, load_average());
    fmt::print(
        "{:<18} {:<13} {:>8} {:>6} {:>7} {:>7} {:>11} {:>7} {:>12} {:>11} {:>13} {:>9}  {}\n",
        "case", "shape", "prefetch", "jobs", "wall s", "jobs/s", "rows jobs/s", "vs base",
        "client cpu s", "child cpu s", "mariadb cpu s", "machine %", "check");
    const CaseResult* base = nullptr;
    const CaseResult* spawn = nullptr;
    for (const auto& c : cases) {
        if (c.name == "baseline SQL loop" && c.shape != "1 conn") base = &c;
        if (c.name == "spawn: posix_spawn") spawn = &c;
    }
    for (const auto& c : cases) {
        const bool is_spawn = c.name.starts_with("spawn");
        const std::string ratio = !is_spawn && base != nullptr && base->rate() > 0
                                      ? fmt::format("{:.2f}x", c.rate() / base->rate())
                                      : "-";
        fmt::print(
            "{:<18} {:<13} {:>8} {:>6} {:>7.2f} {:>7.0f} {:>11.0f} {:>7} {:>12.2f} "
            "{:>11.2f} {:>13.2f} {:>9.0f}  {}{}\n",
            c.name, c.shape, c.prefetch, c.jobs, c.wall_seconds, c.rate(), c.row_rate(), ratio,
            c.worker_cpu, c.child_cpu, c.mariadb_cpu, c.machine_busy,
            is_spawn ? std::string("-") : c.check.describe(c.jobs),
            c.note.empty() ? "" : "  (" + c.note + ")");
    }
    fmt::print(
        "\n{:<18} {:<13} {:>8} {:>9} {:>8} {:>10} {:>7} {:>11} {:>6} {:>7} {:>10} {:>6} "
        "{:>9} {:>10} {:>16}\n",
        "cost per job", "shape", "prefetch", "client us", "child us", "mariadb us", "cpu us",
        "2-CPU bound", "stmts", "commits", "log writes", "fsyncs", "jobs/claim", "index next",
        "claim->done ms");
    for (const auto& c : cases) {
        const double n = c.jobs;
        const double cpu_us = (c.worker_cpu + c.child_cpu + c.mariadb_cpu) / n * 1e6;
        fmt::print(
            "{:<18} {:<13} {:>8} {:>9.0f} {:>8.0f} {:>10.0f} {:>7.0f} {:>11.0f} {:>6.2f} "
            "{:>7.3f} {:>10.3f} {:>6.3f} {:>9.1f} {:>10.1f} {:>16}\n",
            c.name, c.shape, c.prefetch, c.worker_cpu / n * 1e6, c.child_cpu / n * 1e6,
            c.mariadb_cpu / n * 1e6, cpu_us,
            cpu_us > 0 ? std::thread::hardware_concurrency() * 1e6 / cpu_us : 0.0,
            c.server.statements / n, c.server.commits / n, c.server.log_writes / n,
            c.server.fsyncs / n, c.check.claims > 0 ? n / static_cast<double>(c.check.claims) : 0.0,
            c.server.index_next / n,
            fmt::format("{:.0f} / {:.0f}", c.check.in_flight_p50, c.check.in_flight_max));
    }
    for (const auto& c : cases) {
        if (c.probe_ms.empty()) continue;
        fmt::print(
            "claim probe {:<10} {:<13} {:>8}: {} probes, time p50 {:.2f} ms max {:.2f} ms, "
            "pages p50 {:.0f} max {:.0f}, history length p50 {:.0f} max {:.0f}\n",
            c.name, c.shape, c.prefetch, c.probe_ms.size(), percentile(c.probe_ms, 0.5),
            percentile(c.probe_ms, 1.0), percentile(c.probe_pages, 0.5),
            percentile(c.probe_pages, 1.0), percentile(c.probe_history, 0.5),
            percentile(c.probe_history, 1.0));
    }
    fmt::print(
        "  jobs/s: from the start of the workers (the first claim, for the baseline) until "
        "no job is left pending or running (polled every 50 ms); rows jobs/s: first started_at to "
        "last "
        "finished_at.\n  client cpu s: all worker processes (the driver for the baseline); child "
        "cpu s: the converter processes they ran;\n  machine %: busy share of all CPUs "
        "over the run, in % of one core (other users of the machine included).\n"
        "  cpu us: client + child + mariadb CPU per job; 2-CPU bound: the jobs/s that CPU "
        "cost allows on this machine's CPUs if nothing else ran (latency-bound waits "
        "ignored).\n  stmts, commits, log writes, fsyncs: the server's Questions, Com_commit, "
        "Innodb_log_writes and Innodb_data_fsyncs per job.\n  jobs/claim: jobs per "
        "distinct started_at (one per claim statement; approximate with several workers).\n"
        "  index next: Handler_read_next per job, index entries the server stepped through "
        "(claims walking over delete-marked entries not yet purged).\n"
        "  claim->done ms: finished_at - started_at, p50 / max: how long a claimed job "
        "waited to run and to be recorded.\n");
    if (latency && latency->ran) {
        fmt::print(
            "\npick-up latency at idle ({} test.noop jobs via POST {}/api/v1/jobs, {} ms "
            "apart, 1 worker x {} slots, prefetch 0):\n",
            latency->jobs, opt.url, opt.latency_gap_ms, opt.slots);
        fmt::print("  created_at -> started_at   p50 {:.1f} ms  p99 {:.1f} ms  max {:.1f} ms\n",
                   latency->pickup_p50, latency->pickup_p99, latency->pickup_max);
        fmt::print("  created_at -> finished_at  p50 {:.1f} ms  p99 {:.1f} ms\n",
                   latency->finish_p50, latency->finish_p99);
        fmt::print(
            "  POST answered -> started_at p50 {:.1f} ms  p99 {:.1f} ms  (a lower bound; "
            "negative: started before the answer arrived)\n",
            latency->answered_p50, latency->answered_p99);
        fmt::print("  POST round trip (client)   p50 {:.1f} ms  p99 {:.1f} ms\n", latency->post_p50,
                   latency->post_p99);
        fmt::print("  idle worker CPU            {:.3f} % of a core over {:.1f} s\n",
                   latency->idle_cpu_percent, latency->idle_seconds);
    }

    fmt::print("\ntargets:\n");
    for (const auto& c : cases) {
        if (c.name == "test.noop") {
            fmt::print("  {} test.noop {} (prefetch {}) >= 5000 jobs/s: {:.0f}\n",
                       verdict(c.rate() >= 5000), c.shape, c.prefetch, c.rate());
            if (base != nullptr && base->rate() > 0) {
                fmt::print(
                    "  {} test.noop {} (prefetch {}) >= 3x baseline ({} {:.0f} jobs/s): "
                    "{:.2f}x\n",
                    verdict(c.rate() >= 3 * base->rate()), c.shape, c.prefetch, base->shape,
                    base->rate(), c.rate() / base->rate());
            }
        } else if (c.name == "test.true") {
            fmt::print("  {} test.true {} (prefetch {}) >= 1000 jobs/s: {:.0f}{}\n",
                       verdict(c.rate() >= 1000), c.shape, c.prefetch, c.rate(),
                       spawn != nullptr && spawn->rate() > 0
                           ? fmt::format(" ({:.2f}x of the posix_spawn loop's {:.0f}/s)",
                                         c.rate() / spawn->rate(), spawn->rate())
                           : "");
        }
        if (c.name != "baseline SQL loop" && !c.name.starts_with("spawn") && !c.check.ok(c.jobs)) {
            fmt::print("  MISS {} {}: {}\n", c.name, c.shape, c.check.describe(c.jobs));
        }
    }
    if (latency && latency->ran) {
        fmt::print("  {} pick-up p50 <= 20 ms: {:.1f} ms\n", verdict(latency->pickup_p50 <= 20),
                   latency->pickup_p50);
        fmt::print("  {} pick-up p99 <= 200 ms: {:.1f} ms\n", verdict(latency->pickup_p99 <= 200),
                   latency->pickup_p99);
        fmt::print("  {} idle worker CPU < 1 % of a core: {:.3f} %\n",
                   verdict(latency->idle_cpu_percent < 1), latency->idle_cpu_percent);
    }
    std::fflush(stdout);
}

bool wants(const Options& opt, std::string_view phase) {
    return std::find(opt.phases.begin(), opt.phases.end(), phase) != opt.phases.end();
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    std::vector<unsigned> prefetches;
    CLI::App cli{"worker_bench: kiln-worker drain throughput and pick-up latency"};
    cli.add_option("--config", opt.config_path, "the stack's kiln.toml")->required();
    cli.add_option("--worker-bin", opt.worker_bin, "kiln-worker to start")->required();
    cli.add_option("--log-dir", opt.log_dir, "where the workers' logs go")->required();
    cli.add_option("--url", opt.url, "nginx in front of kiln-api (latency phase)");
    cli.add_option("--token", opt.token, "an admin API token (latency phase)");
    cli.add_option("--jobs", opt.jobs, "jobs per drain")->check(CLI::Range(1, 1000000));
    cli.add_option("--baseline-single-jobs", opt.baseline_single_jobs,
                   "jobs the 1-connection baseline drains (0: skip it)")
        ->check(CLI::Range(0, 1000000));
    cli.add_option("--prefetch", prefetches, "worker --prefetch for the drains; several: each")
        ->delimiter(',');
    cli.add_option("--slots", opt.slots, "slots per worker")->check(CLI::Range(1, 256));
    cli.add_option("--latency-jobs", opt.latency_jobs)->check(CLI::Range(1, 100000));
    cli.add_option("--latency-gap-ms", opt.latency_gap_ms)->check(CLI::Range(0, 10000));
    cli.add_option("--phases", opt.phases, "baseline,model,spawn,drain,latency")->delimiter(',');
    cli.add_option("--types", opt.types, "converters to drain")->delimiter(',');
    cli.add_option("--workers", opt.worker_counts, "worker counts to drain with")->delimiter(',');
    cli.add_option("--mariadb-pid", opt.mariadb_pid, "mariadbd's pid, for its CPU time");
    cli.add_flag("--probe-claims", opt.probe_claims,
                 "during drains, time the claim with ANALYZE every 500 ms");
    CLI11_PARSE(cli, argc, argv);
    if (prefetches.empty()) prefetches.push_back(opt.prefetch);

    try {
        auto cfg = must(kiln::load_config(fs::path(opt.config_path)), "loading the config");
        kiln::db::init_library();
        curl_global_init(CURL_GLOBAL_DEFAULT);
        fs::create_directories(opt.log_dir);
        auto admin = must(Connection::open(cfg.database, /*multi_statements=*/true), "connect");
        const std::string load_before = load_average();

        std::vector<CaseResult> cases;
        if (wants(opt, "baseline")) {
            cases.push_back(run_baseline(opt, cfg, *admin, 4, opt.jobs));
            if (opt.baseline_single_jobs > 0) {
                cases.push_back(run_baseline(opt, cfg, *admin, 1, opt.baseline_single_jobs));
            }
        }
        if (wants(opt, "model")) {
            for (bool batched : {false, true}) {
                cases.push_back(run_model(opt, cfg, *admin, 1, batched, 32));
                cases.push_back(run_model(opt, cfg, *admin, 4, batched, 32));
            }
        }
        if (wants(opt, "spawn")) {
            cases.push_back(run_spawn(opt, *admin, true, 5000));
            cases.push_back(run_spawn(opt, *admin, false, 5000));
        }
        if (wants(opt, "drain")) {
            for (const auto& type : opt.types) {
                for (int workers : opt.worker_counts) {
                    for (unsigned p : prefetches) {
                        cases.push_back(run_drain(opt, *admin, type, workers, p));
                        const auto& c = cases.back();
                        progress(fmt::format("  {:.0f} jobs/s ({:.2f} s), {}", c.rate(),
                                             c.wall_seconds, c.check.describe(c.jobs)));
                    }
                }
            }
        }
        std::optional<LatencyResult> latency;
        if (wants(opt, "latency")) {
            if (opt.url.empty() || opt.token.empty())
                die("the latency phase needs --url and --token");
            latency = run_latency(opt, cfg, *admin);
        }
        report(opt, cases, latency, load_before);
        bool all_ran = true;
        for (const auto& c : cases) all_ran = all_ran && c.ran;
        return all_ran ? 0 : 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "worker_bench: error: {}\n", e.what());
        return 1;
    }
}
