#include "tests/integration/support/jobs.hpp"

#include <cstdio>
#include <ctime>
#include <stdexcept>
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

std::int64_t rfc3339_ms(const nlohmann::json& time) {
    const std::string text = time.is_string() ? time.get<std::string>() : time.dump();
    std::tm tm{};
    int ms = 0;
    char zone = 0;
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &zone) != 8 ||
        zone != 'Z') {
        throw std::runtime_error("not an API time: " + text);
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return std::int64_t{::timegm(&tm)} * 1000 + ms;
}

nlohmann::json probe(const std::string& path) {
    return nlohmann::json::parse(run_command({"ffprobe", "-v", "error", "-show_entries",
                                              "stream=codec_name,codec_type,width,height,channels:"
                                              "format=duration,format_name",
                                              "-of", "json", path}));
}

}  // namespace kiln::test
