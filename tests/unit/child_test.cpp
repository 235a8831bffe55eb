#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/process/child.hpp"
#include "core/util/fd.hpp"

namespace kiln::process {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kMarker = "[kiln: log truncated]";

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::size_t count_of(std::string_view haystack, std::string_view needle) {
    std::size_t n = 0;
    for (auto pos = haystack.find(needle); pos != std::string_view::npos;
         pos = haystack.find(needle, pos + needle.size())) {
        ++n;
    }
    return n;
}

// True when the process is gone or a zombie within the bound; waits on a pidfd, no polling.
bool process_ends_within(pid_t pid, std::chrono::milliseconds bound) {
    util::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.valid()) return errno == ESRCH;
    pollfd pfd{pidfd.get(), POLLIN, 0};
    return ::poll(&pfd, 1, static_cast<int>(bound.count())) == 1;
}

std::string error_text(const Result<ChildOutcome>& r) { return r ? "" : r.error().describe(); }

class ChildRun : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "kiln-child-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // A spec that collects stdout lines into lines_.
    ChildSpec spec(std::vector<std::string> argv) {
        ChildSpec s;
        s.argv = std::move(argv);
        s.workdir = dir_;
        s.env = {"PATH=/usr/bin:/bin"};
        s.timeout = 20s;
        s.on_stdout_line = [this](std::string_view line) { lines_.emplace_back(line); };
        return s;
    }
    static std::vector<std::string> sh(std::string script) {
        return {"/bin/sh", "-c", std::move(script)};
    }

    fs::path dir_;
    std::vector<std::string> lines_;
};

TEST_F(ChildRun, ExitCodeZeroIsSuccess) {
    auto r = run_child(spec({"/bin/true"}));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->succeeded());
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_EQ(r->term_signal, 0);
    EXPECT_EQ(r->describe(), "exit status 0");
}

TEST_F(ChildRun, ExitCodeOneIsReportedAsFailedOutcome) {
    auto r = run_child(spec({"/bin/false"}));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_FALSE(r->succeeded());
    EXPECT_EQ(r->exit_code, 1);
    EXPECT_EQ(r->describe(), "exit status 1");
}

TEST_F(ChildRun, ExitCodeIsPassedThrough) {
    auto r = run_child(spec(sh("exit 42")));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(r->exit_code, 42);
}

TEST_F(ChildRun, DeathBySignalIsReportedWithItsName) {
    auto r = run_child(spec(sh("kill -TERM $$")));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_FALSE(r->succeeded());
    EXPECT_EQ(r->term_signal, SIGTERM);
    EXPECT_EQ(r->describe(), "killed by signal 15 (SIGTERM)");
}

TEST_F(ChildRun, ProgramMissingFromPathIsNotFoundError) {
    auto r = run_child(spec({"kiln-no-such-program", "x"}));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::not_found);
}

TEST_F(ChildRun, MissingProgramPathIsNotFoundErrorNotExit127) {
    auto r = run_child(spec({"/nonexistent/kiln-program"}));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::not_found);
    EXPECT_EQ(r.error().native, "ENOENT");
}

TEST_F(ChildRun, NonExecutableProgramIsIoError) {
    const fs::path script = dir_ / "not-executable";
    std::ofstream(script) << "#!/bin/sh\n";
    fs::permissions(script, fs::perms::owner_read | fs::perms::owner_write);
    auto r = run_child(spec({script.string()}));
    ASSERT_FALSE(r);
    // root ignores permission bits except that some x bit must be set: still EACCES.
    EXPECT_EQ(r.error().code, ErrorCode::io);
    EXPECT_EQ(r.error().native, "EACCES");
}

TEST_F(ChildRun, MissingWorkdirIsIoError) {
    auto s = spec({"/bin/true"});
    s.workdir = dir_ / "missing";
    auto r = run_child(s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::io);
    EXPECT_NE(r.error().message.find("chdir"), std::string::npos) << r.error().describe();
}

TEST_F(ChildRun, EmptyArgvIsRejected) {
    auto r = run_child(spec({}));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::invalid_request);
}

TEST_F(ChildRun, ProgramIsLookedUpInThePathOfSpecEnv) {
    auto s = spec({"true"});
    s.env = {"PATH=/nonexistent-kiln-dir"};
    auto missing = run_child(s);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);

    s.env = {"PATH=/nonexistent-kiln-dir:/bin"};
    auto found = run_child(s);
    ASSERT_TRUE(found) << error_text(found);
    EXPECT_TRUE(found->succeeded());
}

TEST_F(ChildRun, DefaultPathIsUsedWhenSpecEnvHasNone) {
    auto s = spec({"true"});
    s.env = {};
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->succeeded());
}

TEST_F(ChildRun, RelativePathEntriesDoNotFindProgramsInWorkdir) {
    const fs::path planted = dir_ / "kiln-planted";
    std::ofstream(planted) << "#!/bin/sh\nexit 0\n";
    fs::permissions(planted, fs::perms::owner_all);
    auto s = spec({"kiln-planted"});
    s.env = {"PATH=.:/usr/bin:/bin"};
    auto r = run_child(s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::not_found);
}

TEST_F(ChildRun, StdoutLinesArriveInOrderIncludingLastLineWithoutNewline) {
    auto r = run_child(spec({"/usr/bin/printf", "one\\ntwo\\n\\nthree"}));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(lines_, (std::vector<std::string>{"one", "two", "", "three"}));
}

TEST_F(ChildRun, ManyStdoutLinesArriveInOrder) {
    auto r = run_child(spec({"/usr/bin/seq", "1", "20000"}));
    ASSERT_TRUE(r) << error_text(r);
    ASSERT_EQ(lines_.size(), 20000u);
    for (std::size_t i = 0; i < lines_.size(); ++i) ASSERT_EQ(lines_[i], std::to_string(i + 1));
}

TEST_F(ChildRun, LineLongerThan64KiBIsDeliveredCut) {
    auto r = run_child(spec(sh("head -c 200000 /dev/zero | tr '\\0' x; echo; echo next")));
    ASSERT_TRUE(r) << error_text(r);
    ASSERT_EQ(lines_.size(), 2u);
    EXPECT_EQ(lines_[0], std::string(64 * 1024, 'x'));
    EXPECT_EQ(lines_[1], "next");
}

TEST_F(ChildRun, StdoutAndStderrGoToLogFileAndTail) {
    auto s = spec(sh("echo to-stdout; echo to-stderr >&2"));
    s.log_file = dir_ / "job.log";
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    const std::string log = read_file(s.log_file);
    EXPECT_NE(log.find("to-stdout\n"), std::string::npos) << log;
    EXPECT_NE(log.find("to-stderr\n"), std::string::npos) << log;
    EXPECT_NE(r->log_tail.find("to-stderr"), std::string::npos) << r->log_tail;
    EXPECT_EQ(lines_, std::vector<std::string>{"to-stdout"});  // stderr is not a progress line
    EXPECT_EQ(fs::status(s.log_file).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

TEST_F(ChildRun, StdoutOnlyParsedStaysOutOfTheLogAndTheTail) {
    auto s = spec(sh("echo progress=continue; echo a-warning >&2; echo progress=end"));
    s.log_file = dir_ / "job.log";
    s.stdout_only_parsed = true;
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(read_file(s.log_file), "a-warning\n");
    EXPECT_EQ(r->log_tail, "a-warning\n");
    EXPECT_EQ(lines_, (std::vector<std::string>{"progress=continue", "progress=end"}));
}

TEST_F(ChildRun, LogFileIsAppendedToNotTruncated) {
    auto s = spec({"/bin/echo", "second"});
    s.log_file = dir_ / "job.log";
    std::ofstream(s.log_file) << "first\n";
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(read_file(s.log_file), "first\nsecond\n");
}

TEST_F(ChildRun, LogIsCappedWithOneMarkerWhileChildWrites50MB) {
    auto s = spec(sh("head -c 50000000 /dev/zero; echo finished >&2"));
    s.log_file = dir_ / "job.log";
    s.max_log_bytes = 10000;
    const auto start = Clock::now();
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->succeeded()) << r->describe();
    EXPECT_LT(Clock::now() - start, 20s);
    const std::string log = read_file(s.log_file);
    EXPECT_LE(log.size(), s.max_log_bytes + 1 + kMarker.size() + 1);
    EXPECT_EQ(count_of(log, kMarker), 1u);
    EXPECT_TRUE(log.ends_with("\n[kiln: log truncated]\n"));
    // The output after the cap still reached the tail: the child was never blocked.
    EXPECT_TRUE(r->log_tail.ends_with("finished\n"));
    EXPECT_LE(r->log_tail.size(), 4096u);
    EXPECT_EQ(lines_.size(), 1u);  // one 50 MB "line", cut
    if (!lines_.empty()) {
        EXPECT_EQ(lines_[0].size(), 64u * 1024u);
    }
}

TEST_F(ChildRun, LogCapCountsWhatTheFileAlreadyHolds) {
    auto s = spec({"/usr/bin/seq", "1", "1000"});
    s.log_file = dir_ / "job.log";
    s.max_log_bytes = 100;
    std::ofstream(s.log_file) << std::string(90, 'a') << '\n';  // 91 bytes already
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(read_file(s.log_file),
              std::string(90, 'a') + "\n1\n2\n3\n4\n5\n[kiln: log truncated]\n");
}

TEST_F(ChildRun, LogBelowCapHasNoMarker) {
    auto s = spec({"/usr/bin/seq", "1", "3"});
    s.log_file = dir_ / "job.log";
    s.max_log_bytes = 6;  // exactly the output
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(read_file(s.log_file), "1\n2\n3\n");
}

TEST_F(ChildRun, TailKeepsTheLast4KiBOfOutput) {
    auto r = run_child(spec(sh("seq 1 100000; echo last-words >&2")));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_LE(r->log_tail.size(), 4096u);
    EXPECT_GE(r->log_tail.size(), 4000u);
    EXPECT_TRUE(r->log_tail.ends_with("100000\nlast-words\n")) << r->log_tail.substr(4000);
}

TEST_F(ChildRun, TimeoutKillsTheProcessAndItsGrandchildPromptly) {
    pid_t grandchild = 0;
    auto s = spec(sh("sleep 100 & echo $!; sleep 100"));
    s.on_stdout_line = [&](std::string_view line) { grandchild = std::stoi(std::string(line)); };
    s.timeout = 300ms;
    const auto start = Clock::now();
    auto r = run_child(s);
    const auto elapsed = Clock::now() - start;
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->timed_out);
    EXPECT_FALSE(r->succeeded());
    EXPECT_EQ(r->term_signal, SIGKILL);
    EXPECT_GE(r->duration, 300ms);
    EXPECT_LT(elapsed, 5s);
    EXPECT_TRUE(r->describe().starts_with("timed out after ")) << r->describe();
    ASSERT_GT(grandchild, 0);
    EXPECT_TRUE(process_ends_within(grandchild, 2s));
}

TEST_F(ChildRun, GrandchildIsKilledAfterTheChildExitsNormally) {
    pid_t grandchild = 0;
    auto s = spec(sh("sleep 100 & echo $!"));
    s.on_stdout_line = [&](std::string_view line) { grandchild = std::stoi(std::string(line)); };
    const auto start = Clock::now();
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->succeeded()) << r->describe();
    EXPECT_LT(Clock::now() - start, 5s);
    ASSERT_GT(grandchild, 0);
    EXPECT_TRUE(process_ends_within(grandchild, 2s));
}

TEST_F(ChildRun, DetachedGrandchildHoldingThePipesDoesNotBlockTheReturn) {
    pid_t detached = 0;
    // The fifo makes the shell wait until the grandchild has left the group.
    auto s =
        spec(sh("mkfifo detached; setsid sh -c 'echo $$ > detached; exec sleep 30' & "
                "read pid < detached; echo $pid"));
    s.on_stdout_line = [&](std::string_view line) { detached = std::stoi(std::string(line)); };
    const auto start = Clock::now();
    auto r = run_child(s);
    const auto elapsed = Clock::now() - start;
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->succeeded()) << r->describe();
    EXPECT_LT(elapsed, 5s);
    ASSERT_GT(detached, 0);
    // It left the group, so the group kill missed it: the wait for EOF was bounded instead.
    EXPECT_EQ(::kill(detached, SIGKILL), 0);
}

TEST_F(ChildRun, StopFlagKillsTheChild) {
    std::atomic<bool> stop{false};
    auto s = spec(sh("echo ready; sleep 100"));
    s.on_stdout_line = [&](std::string_view line) {
        if (line == "ready") stop = true;
    };
    s.stop = &stop;
    const auto start = Clock::now();
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->stopped);
    EXPECT_FALSE(r->timed_out);
    EXPECT_FALSE(r->succeeded());
    EXPECT_EQ(r->describe(), "stopped");
    EXPECT_LT(Clock::now() - start, 5s);
}

TEST_F(ChildRun, StopFlagSetFromAnotherThreadKillsTheChild) {
    std::atomic<bool> stop{false};
    auto s = spec({"/bin/sleep", "100"});
    s.stop = &stop;
    std::thread stopper([&] {
        std::this_thread::sleep_for(200ms);  // test only: let the child get going
        stop = true;
    });
    const auto start = Clock::now();
    auto r = run_child(s);
    stopper.join();
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->stopped);
    EXPECT_LT(Clock::now() - start, 5s);
}

TEST_F(ChildRun, ExceptionFromLineCallbackKillsTheChild) {
    pid_t pid = 0;
    auto s = spec(sh("echo $$; exec sleep 100"));
    s.on_stdout_line = [&](std::string_view line) {
        pid = std::stoi(std::string(line));
        throw std::runtime_error("callback failed");
    };
    const auto start = Clock::now();
    EXPECT_THROW((void)run_child(s), std::runtime_error);
    EXPECT_LT(Clock::now() - start, 5s);
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(process_ends_within(pid, 2s));
}

TEST_F(ChildRun, FileSizeLimitStopsALargeWrite) {
    auto s = spec({"/bin/dd", "if=/dev/zero", "of=big", "bs=65536", "count=64"});  // 4 MiB
    s.limits.file_size_bytes = 1 << 20;
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_FALSE(r->succeeded());
    EXPECT_EQ(r->term_signal, SIGXFSZ) << r->describe();
    EXPECT_LE(fs::file_size(dir_ / "big"), 1u << 20);
}

TEST_F(ChildRun, AddressSpaceLimitStopsABigAllocation) {
    auto s = spec({"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1G", "count=1"});
    s.limits.address_space_bytes = 256u << 20;
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_FALSE(r->succeeded());
    EXPECT_NE(r->log_tail.find("memory exhausted"), std::string::npos) << r->log_tail;

    // The same limit leaves room for a modest buffer, so the failure above is the limit's doing.
    s.argv = {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=1"};
    auto small = run_child(s);
    ASSERT_TRUE(small) << error_text(small);
    EXPECT_TRUE(small->succeeded()) << small->log_tail;
}

TEST_F(ChildRun, OpenFilesLimitIsSetSoftAndHard) {
    auto s = spec(sh("ulimit -n; ulimit -Hn"));
    s.limits.open_files = 16;
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(lines_, (std::vector<std::string>{"16", "16"}));
}

TEST_F(ChildRun, CpuLimitKillsASpinningChild) {
    auto s = spec(sh("while :; do :; done"));
    s.limits.cpu_seconds = 1;
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_FALSE(r->timed_out);
    EXPECT_EQ(r->term_signal, SIGXCPU) << r->describe();
}

TEST_F(ChildRun, EnvironmentIsExactlySpecEnv) {
    ::setenv("KILN_PARENT_ONLY", "leak", 1);
    auto s = spec({"env"});
    s.env = {"KILN_A=1", "KILN_B=two words", "PATH=/usr/bin:/bin"};
    auto r = run_child(s);
    ::unsetenv("KILN_PARENT_ONLY");
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(lines_, s.env);
}

TEST_F(ChildRun, EmptySpecEnvGivesAnEmptyEnvironment) {
    auto s = spec({"/usr/bin/env"});
    s.env = {};
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(lines_.empty());
}

TEST_F(ChildRun, WorkdirIsTheChildsCwd) {
    auto r = run_child(spec({"/bin/pwd"}));
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(lines_, std::vector<std::string>{fs::canonical(dir_).string()});
}

TEST_F(ChildRun, StdinIsDevNull) {
    auto s = spec({"/bin/cat"});
    s.timeout = 5s;
    auto r = run_child(s);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_TRUE(r->succeeded()) << r->describe();
    EXPECT_TRUE(lines_.empty());

    auto link = run_child(spec({"/usr/bin/readlink", "/proc/self/fd/0"}));
    ASSERT_TRUE(link) << error_text(link);
    EXPECT_EQ(lines_, std::vector<std::string>{"/dev/null"});
}

TEST_F(ChildRun, OnlyStdioDescriptorsAreInherited) {
    // A descriptor some other code opened without O_CLOEXEC must not reach the converter.
    util::UniqueFd stray(::open("/dev/null", O_RDONLY));
    ASSERT_TRUE(stray.valid());
    auto r = run_child(spec({"/bin/ls", "/proc/self/fd"}));
    ASSERT_TRUE(r) << error_text(r);
    // 3 is the directory ls itself opened to list.
    EXPECT_EQ(lines_, (std::vector<std::string>{"0", "1", "2", "3"}));
}

TEST_F(ChildRun, BlockedAndIgnoredSignalsAreResetInTheChild) {
    sigset_t block;
    sigset_t previous_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &previous_mask), 0);
    struct sigaction ignore {};
    struct sigaction previous_pipe {};
    ignore.sa_handler = SIG_IGN;
    ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &previous_pipe), 0);

    auto r = run_child(spec({"/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}));

    ::sigaction(SIGPIPE, &previous_pipe, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
    ASSERT_TRUE(r) << error_text(r);
    EXPECT_EQ(lines_,
              (std::vector<std::string>{"SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"}));
}

TEST_F(ChildRun, RunsConcurrentlyFromSeveralThreads) {
    constexpr int kThreads = 4;
    std::vector<std::vector<std::string>> seen(kThreads);
    std::vector<char> ok(kThreads, 0);  // not vector<bool>: written from several threads
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            for (int round = 0; round < 10; ++round) {
                auto s = spec({"/bin/echo", "thread-" + std::to_string(i)});
                s.on_stdout_line = [&, i](std::string_view line) { seen[i].emplace_back(line); };
                auto r = run_child(s);
                if (!r || !r->succeeded()) return;
            }
            ok[i] = 1;
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
        EXPECT_TRUE(ok[i]);
        EXPECT_EQ(seen[i], std::vector<std::string>(10, "thread-" + std::to_string(i)));
    }
}

TEST(ChildOutcomeDescribe, NamesHowTheChildEnded) {
    ChildOutcome exited;
    exited.exit_code = 3;
    EXPECT_EQ(exited.describe(), "exit status 3");

    ChildOutcome killed;
    killed.term_signal = SIGKILL;
    EXPECT_EQ(killed.describe(), "killed by signal 9 (SIGKILL)");

    ChildOutcome timed_out;
    timed_out.timed_out = true;
    timed_out.term_signal = SIGKILL;
    timed_out.duration = 30'012ms;
    EXPECT_EQ(timed_out.describe(), "timed out after 30 s");
    timed_out.duration = 305ms;
    EXPECT_EQ(timed_out.describe(), "timed out after 0.3 s");
    timed_out.duration = 5'004ms;
    EXPECT_EQ(timed_out.describe(), "timed out after 5 s");

    ChildOutcome stopped;
    stopped.stopped = true;
    stopped.term_signal = SIGKILL;
    EXPECT_EQ(stopped.describe(), "stopped");
}

}  // namespace
}  // namespace kiln::process
