#include "tests/integration/support/processes.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/integration/support/fcgi_client.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {

SpawnedProcess::SpawnedProcess(const std::vector<std::string>& argv,
                               const std::filesystem::path& log, const EnvOverrides& env)
    : log_(log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ChildEnvironment child_env(env);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), child_env.envp());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
    pid_ = pid;
}

SpawnedProcess::~SpawnedProcess() {
    if (pid_ > 0) stop(SIGTERM, std::chrono::seconds(10));
}

int SpawnedProcess::stop(int signal, std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, signal);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (true) {
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) break;
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

std::filesystem::path worker_binary() {
    return Stack::get().kilnctl.parent_path().parent_path() / "worker" / "kiln-worker";
}

std::unique_ptr<SpawnedProcess> start_private_api(const EnvOverrides& env,
                                                  const std::filesystem::path& socket,
                                                  const std::string& log_name) {
    const Stack& stack = Stack::get();
    EnvOverrides all = env;
    all.emplace_back("KILN_API_LISTEN", socket.string());
    auto api = std::make_unique<SpawnedProcess>(
        std::vector<std::string>{
            (stack.kilnctl.parent_path().parent_path() / "fcgi" / "kiln-api").string(), "--config",
            stack.config_path.string()},
        scratch_dir() / log_name, all);
    for (int i = 0; i < 200 && !std::filesystem::exists(socket); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return api;
}

std::string fcgi_request(const std::filesystem::path& socket, const std::string& method,
                         const std::string& path, const std::string& token, const std::string& body,
                         const std::string& content_type) {
    EnvOverrides cgi = fcgi_params(method, path, token);
    std::filesystem::path body_file;
    if (!body.empty()) {
        cgi.emplace_back("CONTENT_TYPE", content_type);
        cgi.emplace_back("CONTENT_LENGTH", std::to_string(body.size()));
        body_file = scratch_dir() / "fcgi-request-body";
        std::ofstream(body_file, std::ios::binary | std::ios::trunc) << body;
    }
    return run_command({"cgi-fcgi", "-bind", "-connect", socket.string()}, body_file, cgi);
}

}  // namespace kiln::test
