#pragma once
// Converters are data: one TOML definition file each, read by kiln-api (validation, /types) and
// kiln-worker (how to run it). The worker-side fields ([run]) are optional for the API.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace kiln::converters {

// A definition declares at most this many params, and a request may send at most this many.
inline constexpr std::size_t max_params = 32;

struct ParamSpec {
    enum class Kind { enumeration, integer, boolean };
    std::string name;
    Kind kind = Kind::enumeration;
    std::string description;
    std::vector<std::string> values;  // enumeration
    std::int64_t min = 0;             // integer, inclusive
    std::int64_t max = 0;             // integer, inclusive
    bool required = false;
    nlohmann::json default_value;  // null when the param has no default
};

// One program run of a converter; a converter runs its steps in order in one work directory.
struct RunStep {
    std::string name;  // shown as the job's step while it runs
    std::string program;
    std::vector<std::string> args;  // argument template, {placeholders} expanded by the worker
};

struct RunSpec {
    // Normalised: a single [run] program/args becomes one step named "convert".
    std::vector<RunStep> steps;
    std::string program;            // "" for in-process converters (builtin)
    std::string builtin;            // name of an in-process converter, e.g. "noop"
    std::vector<std::string> args;  // argument template, {placeholders} expanded by the worker
    std::vector<std::string> outputs;
    std::string progress = "none";  // "none", "ffmpeg", "lines"
    // Text in a failed step's output (its last 4 KiB) that means another attempt cannot succeed,
    // e.g. ffmpeg's "Invalid data found when processing input": the job fails at once.
    std::vector<std::string> permanent_errors;
};

struct Definition {
    std::string name;  // e.g. "video.transcode": [a-z0-9_.-]{1,64}
    std::string description;
    std::vector<std::string> accepts;    // MIME types, "video/*" wildcards allowed
    std::uint64_t max_upload_bytes = 0;  // per file
    std::uint32_t min_files = 1;
    std::uint32_t max_files = 1;
    std::vector<ParamSpec> params;
    std::chrono::seconds timeout{600};
    std::uint32_t max_attempts = 3;
    // Images: width x height above this fail the job before any decoding (image bombs: a small
    // file declaring a huge canvas). Read from the header with vipsheader.
    std::optional<std::uint64_t> max_pixels;
    // The largest file a step may write (RLIMIT_FSIZE); unset: the worker's own limit (8 GiB).
    std::optional<std::uint64_t> max_output_bytes;
    RunSpec run;
    std::filesystem::path source;  // the file it was read from

    [[nodiscard]] bool accepts_mime(std::string_view mime) const;
    [[nodiscard]] const ParamSpec* param(std::string_view name) const;
};

// Reads one definition file. Fails with config on a syntax error or a missing/invalid field,
// with the file name and the key in the message.
Result<Definition> load_definition(const std::filesystem::path& file);

// Reads every *.toml file in each directory (later directories may add converters; a name
// defined twice is an error).
Result<std::map<std::string, Definition, std::less<>>> load_definitions(
    const std::vector<std::filesystem::path>& dirs);

// Validates client params (a JSON object or null) against the definition: unknown keys, wrong
// JSON types, values outside enums or ranges, missing required params all fail with
// invalid_request naming the param. Returns the normalised object with defaults filled in.
// Limits: at most 32 keys, string values at most 256 bytes.
Result<nlohmann::json> validate_params(const Definition& def, const nlohmann::json& params);

// The public description served by GET /api/v1/types.
nlohmann::json to_public_json(const Definition& def);

}  // namespace kiln::converters
