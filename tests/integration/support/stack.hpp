#pragma once
// What the integration tests know about the stack scripts/test started: its URL, config,
// storage and processes, from KILN_TEST_* environment variables.

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "tests/integration/support/http_client.hpp"

namespace kiln::test {

// The source checkout (for sql/ and other files the tests read).
std::filesystem::path source_dir();

// The variable's value; throws when scripts/test did not set it (so a test can never pass
// against no stack).
std::string required_env(const char* name);

struct Stack {
    std::string url;
    std::string admin_token;
    std::filesystem::path config_path;
    std::filesystem::path var;
    std::filesystem::path kilnctl;
    Config config;

    static const Stack& get();

    Client admin() const { return Client(url, admin_token); }
    // A fresh token for `owner` (kilnctl token create).
    std::string create_token(const std::string& owner, bool admin = false) const;
    // Regular files under the storage root's `area` (sources, results, logs, tmp), recursively.
    std::vector<std::filesystem::path> files_in(const std::string& area) const;
    // Files of uploads being staged (tmp/sources-{job}-{random}/...): what a refused or broken
    // upload must not leave. Workers' work directories, also under tmp/, are not counted.
    std::vector<std::filesystem::path> staged_upload_files() const;
    // Rows in jobs (all owners), counted with a direct query.
    std::int64_t job_rows() const;
    // kiln-api's pid from VAR/run/kiln-api.pid.
    int api_pid() const;
};

// A database of its own on the stack's MariaDB server (kiln_PURPOSE_PID), migrated from
// `migrations`, dropped when this goes out of scope: for tests whose rows no other test or
// worker may see. Throws when it cannot be made.
class PrivateDatabase {
  public:
    explicit PrivateDatabase(const std::string& purpose,
                             const std::filesystem::path& migrations = source_dir() / "sql");
    ~PrivateDatabase();
    PrivateDatabase(const PrivateDatabase&) = delete;
    PrivateDatabase& operator=(const PrivateDatabase&) = delete;

    const DatabaseConfig& config() const { return config_; }
    // Applies the migrations of `dir` not applied yet; the schema version after.
    int migrate(const std::filesystem::path& dir);

  private:
    DatabaseConfig config_;
};

// Variables set in a child's environment on top of (or in place of) this process's own.
using EnvOverrides = std::vector<std::pair<std::string, std::string>>;

// This process's environment with `overrides` replacing or adding variables, as the envp
// array that posix_spawn takes.
class ChildEnvironment {
  public:
    explicit ChildEnvironment(const EnvOverrides& overrides);
    ChildEnvironment(const ChildEnvironment&) = delete;
    ChildEnvironment& operator=(const ChildEnvironment&) = delete;
    char** envp() { return pointers_.data(); }

  private:
    std::vector<std::string> entries_;  // NAME=VALUE
    std::vector<char*> pointers_;       // into entries_, then nullptr
};

// Runs argv, returns stdout; throws on a non-zero exit. With `stdin_file`, the program reads it
// as its standard input; `env` is added to the environment it inherits.
std::string run_command(const std::vector<std::string>& argv,
                        const std::filesystem::path& stdin_file = {}, const EnvOverrides& env = {});

// A process's peak resident set (VmHWM) in bytes.
std::uint64_t peak_rss_bytes(int pid);
// Starts a new peak: VmHWM becomes the current RSS (writes 5 to /proc/PID/clear_refs).
void reset_peak_rss(int pid);

// The whole content of a file; throws when it cannot be read.
std::string read_file(const std::filesystem::path& path);

// A file of `size` bytes whose first bytes are `head` (the rest zeros), in a temp directory.
std::filesystem::path make_file(const std::string& name, const std::string& head,
                                std::uint64_t size);

// A scratch directory unique to this test process, removed at exit.
const std::filesystem::path& scratch_dir();

// Sends raw bytes to host:port of `url` over one TCP connection, then waits for a response or
// for `read_timeout_ms`; returns what was read (maybe empty). close_early: shut the connection
// without reading (a client going away).
std::string raw_http(const std::string& url, const std::string& bytes, bool close_early = false,
                     int read_timeout_ms = 5000);

}  // namespace kiln::test
