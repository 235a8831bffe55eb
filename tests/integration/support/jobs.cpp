#include "tests/integration/support/jobs.hpp"

#include <thread>

#include "tests/integration/support/stack.hpp"

namespace kiln::test {

Watched watch_job(const Client& client, const std::string& id, std::chrono::milliseconds timeout) {
    Watched w;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto r = client.get("/api/v1/jobs/" + id);
        if (r.status == 200) {
            w.job = r.json();
            const int p = w.job["progress"].get<int>();
            if (w.progress.empty() || w.progress.back() != p) w.progress.push_back(p);
            if (w.job["step"].is_string()) {
                const std::string step = w.job["step"];
                if (w.steps.empty() || w.steps.back() != step) w.steps.push_back(step);
            }
            const std::string status = w.job["status"];
            if (status == "completed" || status == "failed" || status == "cancelled") break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return w;
}

nlohmann::json probe(const std::string& path) {
    return nlohmann::json::parse(run_command({"ffprobe", "-v", "error", "-show_entries",
                                              "stream=codec_name,codec_type,width,height,channels:"
                                              "format=duration,format_name",
                                              "-of", "json", path}));
}

}  // namespace kiln::test
