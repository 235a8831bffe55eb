#pragma once
// kiln's configuration: one TOML file shared by kiln-api, kiln-worker and kilnctl, with
// environment overrides for the things that differ between hosts and test stacks.
//
//   KILN_CONFIG      path of the file (default /etc/kiln/kiln.toml); --config wins over it
//   KILN_DB          mariadb://user[:password]@host[:port]/name[?socket=/path/to.sock]
//   KILN_STORAGE     storage root
//   KILN_CONVERTERS  converter definition directories, ':'-separated
//   KILN_API_LISTEN  kiln-api's unix socket path
//   KILN_WAKEUP      the workers' wake-up datagram socket directory

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace kiln {

struct DatabaseConfig {
    std::string socket;  // unix socket; when set, host and port are not used
    std::string host = "127.0.0.1";
    unsigned port = 3306;
    std::string user = "kiln";
    std::string password;
    std::string name = "kiln";
    std::chrono::seconds connect_timeout{1};  // bounds how long a request waits when the DB is down
};

struct ApiConfig {
    std::string listen = "/run/kiln/api.sock";
    unsigned threads = 16;         // requests without a body: reads, downloads, cancels
    unsigned upload_threads = 16;  // requests with a body: uploads (see FcgiServer)
    std::uint64_t max_request_bytes = 4ull << 30;
    std::size_t max_parts = 16;
    std::size_t max_part_header_bytes = 8192;
    std::size_t max_field_bytes = 64 * 1024;  // a non-file form field (type, params, priority)
    std::size_t max_json_body_bytes = 256 * 1024;
    // position_in_queue counts up to this many jobs ahead; each counted job is an index entry
    // read on every create and every get of a pending job.
    unsigned queue_position_cap = 100;
};

struct WorkerConfig {
    std::string name;  // default: hostname-pid
    unsigned slots = 2;
    // Jobs claimed ahead of free slots: raises throughput for very short jobs, but a prefetched
    // job waits on this worker while another may be idle, so it is off by default.
    unsigned prefetch = 0;
    std::vector<std::string> types;  // empty: every converter
    std::chrono::milliseconds poll_min{200};
    std::chrono::milliseconds poll_max{2000};
    std::chrono::seconds lease{30};
    std::chrono::seconds grace{30};
};

struct Config {
    DatabaseConfig database;
    std::filesystem::path storage_root = "/var/lib/kiln";
    std::vector<std::filesystem::path> converter_dirs{"/usr/share/kiln/converters"};
    std::filesystem::path wakeup_dir = "/run/kiln/wakeup";
    ApiConfig api;
    WorkerConfig worker;
    std::filesystem::path file;  // the file read; empty when there was none (built-in defaults)
};

// The file read when neither --config nor KILN_CONFIG names one.
inline constexpr const char* default_config_path = "/etc/kiln/kiln.toml";

// Reads the file (a missing file is an error only when `path` was given explicitly), then applies
// the environment overrides. Fails with config naming the key on an unknown key or a bad value.
Result<Config> load_config(const std::optional<std::filesystem::path>& path);

// Parses a KILN_DB URL into `db`. Fails with config on a malformed URL.
Result<> parse_database_url(std::string_view url, DatabaseConfig& db);

}  // namespace kiln
