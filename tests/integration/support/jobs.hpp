#pragma once
// Following jobs from a test: poll until a job settles, recording the progress seen on the way.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/support/http_client.hpp"

namespace kiln::test {

struct Watched {
    nlohmann::json job;              // the last state read
    std::vector<int> progress;       // every distinct progress value seen, in order
    std::vector<std::string> steps;  // every distinct step seen, in order
};

// Polls GET /api/v1/jobs/{id} every 50 ms until the job is completed, failed or cancelled, or
// `timeout` passes (then job holds the last state, whatever it is).
Watched watch_job(const Client& client, const std::string& id,
                  std::chrono::milliseconds timeout = std::chrono::seconds(120));

// Milliseconds since the epoch of an API time ("2026-11-25T14:45:02.540Z"); throws on another
// form.
std::int64_t rfc3339_ms(const nlohmann::json& time);

// ffprobe's JSON (streams and format) for a file.
nlohmann::json probe(const std::string& path);

}  // namespace kiln::test
