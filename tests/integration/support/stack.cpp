#include "tests/integration/support/stack.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "core/db/mariadb.hpp"
#include "core/db/migrate.hpp"
#include "core/util/fd.hpp"

extern char** environ;

namespace kiln::test {
namespace fs = std::filesystem;

std::string required_env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        throw std::runtime_error(std::string(name) +
                                 " is not set: run the tests with scripts/test");
    }
    return v;
}

const Stack& Stack::get() {
    static const Stack stack = [] {
        Stack s;
        s.url = required_env("KILN_TEST_URL");
        s.admin_token = required_env("KILN_TEST_ADMIN_TOKEN");
        s.config_path = required_env("KILN_TEST_CONFIG");
        s.var = required_env("KILN_TEST_VAR");
        s.kilnctl = required_env("KILN_TEST_KILNCTL");
        auto cfg = load_config(s.config_path);
        if (!cfg) throw std::runtime_error(cfg.error().describe());
        s.config = *cfg;
        db::init_library();
        return s;
    }();
    return stack;
}

std::string Stack::create_token(const std::string& owner, bool admin) const {
    std::vector<std::string> argv = {
        kilnctl.string(), "--config", config_path.string(), "token", "create", "--owner", owner};
    if (admin) argv.push_back("--admin");
    std::string out = run_command(argv);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

std::vector<fs::path> Stack::files_in(const std::string& area) const {
    std::vector<fs::path> out;
    fs::path dir = config.storage_root / area;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
        if (it->is_regular_file()) out.push_back(it->path());
    }
    return out;
}

std::vector<fs::path> Stack::staged_upload_files() const {
    const fs::path tmp = config.storage_root / "tmp";
    std::vector<fs::path> out;
    for (const auto& file : files_in("tmp")) {
        const fs::path top = *file.lexically_relative(tmp).begin();
        if (top.string().starts_with("sources-")) out.push_back(file);
    }
    return out;
}

std::int64_t Stack::job_rows() const {
    auto conn = db::Connection::open(config.database);
    if (!conn) throw std::runtime_error(conn.error().describe());
    auto rows = (*conn)->query("SELECT COUNT(*) FROM jobs");
    if (!rows) throw std::runtime_error(rows.error().describe());
    return rows->front().integer(0);
}

std::filesystem::path source_dir() { return KILN_SOURCE_DIR; }

namespace {

void run_admin_statement(const std::string& sql) {
    auto admin = db::Connection::open(Stack::get().config.database);
    if (!admin) throw std::runtime_error(admin.error().describe());
    if (auto r = (*admin)->execute(sql, {}); !r) throw std::runtime_error(r.error().describe());
}

}  // namespace

PrivateDatabase::PrivateDatabase(const std::string& purpose,
                                 const std::filesystem::path& migrations)
    : config_(Stack::get().config.database) {
    config_.name = "kiln_" + purpose + "_" + std::to_string(::getpid());
    run_admin_statement("DROP DATABASE IF EXISTS " + config_.name);
    run_admin_statement("CREATE DATABASE " + config_.name);
    migrate(migrations);
}

PrivateDatabase::~PrivateDatabase() {
    try {
        run_admin_statement("DROP DATABASE IF EXISTS " + config_.name);
    } catch (const std::exception&) {
        // The next run of the same test drops it first.
    }
}

int PrivateDatabase::migrate(const std::filesystem::path& dir) {
    auto report = db::migrate(config_, dir);
    if (!report) throw std::runtime_error(report.error().describe());
    return report->current_version;
}

int Stack::api_pid() const {
    std::ifstream in(var / "run" / "kiln-api.pid");
    int pid = 0;
    in >> pid;
    if (pid <= 0) throw std::runtime_error("no kiln-api pid file under " + var.string());
    return pid;
}

ChildEnvironment::ChildEnvironment(const EnvOverrides& overrides) {
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view entry(*e);
        const auto name = entry.substr(0, entry.find('='));
        const bool replaced = std::any_of(overrides.begin(), overrides.end(),
                                          [&](const auto& o) { return o.first == name; });
        if (!replaced) entries_.emplace_back(entry);
    }
    for (const auto& [name, value] : overrides) entries_.push_back(name + "=" + value);
    for (auto& e : entries_) pointers_.push_back(e.data());
    pointers_.push_back(nullptr);
}

std::string run_command(const std::vector<std::string>& argv, const fs::path& stdin_file,
                        const EnvOverrides& env) {
    int out_pipe[2];
    if (pipe(out_pipe) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
    if (!stdin_file.empty()) {
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, stdin_file.c_str(), O_RDONLY, 0);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ChildEnvironment child_env(env);
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), child_env.envp());
    posix_spawn_file_actions_destroy(&actions);
    close(out_pipe[1]);
    if (rc != 0) {
        close(out_pipe[0]);
        throw std::runtime_error("cannot start " + argv[0]);
    }
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(out_pipe[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(out_pipe[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error(argv[0] + " failed with status " + std::to_string(status));
    }
    return out;
}

std::uint64_t peak_rss_bytes(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            std::istringstream fields(line.substr(6));
            std::uint64_t kb = 0;
            fields >> kb;
            return kb * 1024;
        }
    }
    throw std::runtime_error("no VmHWM for pid " + std::to_string(pid));
}

void reset_peak_rss(int pid) {
    std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
    out << "5";
    out.flush();
    if (!out) throw std::runtime_error("cannot reset the peak RSS of pid " + std::to_string(pid));
}

const fs::path& scratch_dir() {
    static const fs::path dir = [] {
        fs::path d = fs::temp_directory_path() / ("kiln-test-" + std::to_string(getpid()));
        fs::create_directories(d);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(fs::temp_directory_path() / ("kiln-test-" + std::to_string(getpid())),
                           ec);
        });
        return d;
    }();
    return dir;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

fs::path make_file(const std::string& name, const std::string& head, std::uint64_t size) {
    fs::path path = scratch_dir() / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(head.data(),
              static_cast<std::streamsize>(std::min<std::uint64_t>(head.size(), size)));
    out.close();
    if (size > head.size()) fs::resize_file(path, size);  // sparse zeros
    return path;
}

std::string raw_http(const std::string& url, const std::string& bytes, bool close_early,
                     int read_timeout_ms) {
    // url: http://127.0.0.1:PORT
    auto colon = url.rfind(':');
    int port = std::stoi(url.substr(colon + 1));
    util::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        throw std::runtime_error("connect failed");
    }
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = send(fd.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
    }
    if (close_early) return "";
    std::string out;
    char buf[4096];
    pollfd p{fd.get(), POLLIN, 0};
    while (poll(&p, 1, read_timeout_ms) > 0) {
        ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

}  // namespace kiln::test
