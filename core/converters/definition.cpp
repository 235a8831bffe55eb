// Converter definition files. The format is documented in docs/converters.md; in short:
//
//   name = "video.transcode"           # [a-z0-9][a-z0-9_.-]{0,63}, unique across directories
//   description = "..."                # required, served by GET /api/v1/types
//   accepts = ["video/*"]              # type/subtype or type/*; required when max_files > 0
//   max_upload_bytes = 4294967296      # per file; required (> 0) when max_files > 0
//   min_files = 1                      # 0..max_files, default 1
//   max_files = 1                      # 0..64, default 1 (0: the converter takes no upload)
//   timeout_seconds = 3600             # 1..86400, default 600
//   max_attempts = 3                   # 1..100, default 3
//   max_output_bytes = 67108864        # 1..2^43, the largest file a step may write
//
//   [params.<name>]                    # [a-z][a-z0-9_]{0,31}, at most 32 params
//   type = "enum"                      # enum | integer | boolean
//   values = ["mp4", "webm"]           # enum only: [A-Za-z0-9][A-Za-z0-9_.+-]{0,63}, no duplicates
//   min = 240                          # integer only, both required, min <= max
//   max = 2160
//   default = "mp4"                    # optional; of the param's type, within values/range
//   required = false                   # optional; a param with a default cannot be required
//   description = "..."                # optional
//
//   [run]                              # optional for the API, needed by the worker
//   program = "ffmpeg"                 # exactly one of program / builtin
//   builtin = "noop"
//   args = ["-i", "{input}", ...]      # strings; {placeholders} are expanded by the worker
//   outputs = ["video.{format}"]       # single path components, no leading '.'
//   progress = "ffmpeg"                # none (default) | ffmpeg | lines
//   permanent_errors = ["..."]         # output texts that make a failure permanent (<= 32)
//
// Every table is closed: an unknown key is an error, so a typo never silently becomes a default.

#include "core/converters/definition.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <string_view>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/converters/rules.hpp"
#include "core/converters/toml_reader.hpp"

namespace kiln::converters {
namespace {

constexpr std::size_t max_definition_file_bytes = 1 << 20;
constexpr std::uint32_t max_files_limit = 64;
constexpr std::size_t max_permanent_errors = 32;
// Matched in the last 4 KiB of output, so a longer text could never match.
constexpr std::size_t max_permanent_error_bytes = 256;

ParamSpec parse_param(const std::string& file, std::string_view name, const toml::node& node) {
    const std::string prefix = fmt::format("params.{}", name);
    if (!node.is_table()) {
        throw DefinitionError(
            fmt::format("{}: {}: must be a table, not {}", file, prefix, type_name(node)));
    }
    const TableReader r(file, *node.as_table(), prefix);
    r.reject_unknown_keys({"type", "values", "min", "max", "default", "required", "description"});

    ParamSpec spec;
    spec.name = std::string(name);
    spec.description = r.string("description").value_or("");
    spec.required = r.boolean("required").value_or(false);

    const std::string type = r.required_string("type");
    const toml::node* def = r.node("default");
    if (type == "enum") {
        spec.kind = ParamSpec::Kind::enumeration;
        if (r.has("min") || r.has("max"))
            r.fail_here("min/max are only allowed for integer params");
        if (!r.has("values")) r.fail_at("values", "is required for an enum param");
        spec.values = r.strings("values");
        if (spec.values.empty()) r.fail_at("values", "must not be empty");
        std::set<std::string_view> seen;
        for (std::size_t i = 0; i < spec.values.size(); ++i) {
            const std::string& value = spec.values[i];
            const std::string key = fmt::format("values[{}]", i);
            if (!is_valid_enum_value(value)) {
                r.fail_at(key, fmt::format("'{}' is not a valid enum value "
                                           "([A-Za-z0-9][A-Za-z0-9_.+-]{{0,63}})",
                                           value));
            }
            if (!seen.insert(value).second) r.fail_at(key, fmt::format("duplicate '{}'", value));
        }
        if (def != nullptr) {
            const std::string value = *r.string("default");
            if (std::find(spec.values.begin(), spec.values.end(), value) == spec.values.end()) {
                r.fail_at("default", fmt::format("'{}' is not one of the values ({})", value,
                                                 join(spec.values, ", ")));
            }
            spec.default_value = value;
        }
    } else if (type == "integer") {
        spec.kind = ParamSpec::Kind::integer;
        if (r.has("values")) r.fail_here("values are only allowed for enum params");
        const auto min = r.integer("min");
        const auto max = r.integer("max");
        if (!min) r.fail_at("min", "is required for an integer param");
        if (!max) r.fail_at("max", "is required for an integer param");
        if (*min > *max) r.fail_at("min", fmt::format("{} is greater than max {}", *min, *max));
        spec.min = *min;
        spec.max = *max;
        if (def != nullptr) {
            const std::int64_t value = *r.integer("default");
            if (value < spec.min || value > spec.max) {
                r.fail_at("default", fmt::format("{} is outside min..max ({}..{})", value, spec.min,
                                                 spec.max));
            }
            spec.default_value = value;
        }
    } else if (type == "boolean") {
        spec.kind = ParamSpec::Kind::boolean;
        if (r.has("values")) r.fail_here("values are only allowed for enum params");
        if (r.has("min") || r.has("max"))
            r.fail_here("min/max are only allowed for integer params");
        if (def != nullptr) spec.default_value = *r.boolean("default");
    } else {
        r.fail_at("type", fmt::format("'{}' is not one of enum, integer, boolean", type));
    }

    if (spec.required && def != nullptr) {
        r.fail_at("required", "a param with a default cannot be required");
    }
    return spec;
}

RunSpec parse_run(const TableReader& r) {
    r.reject_unknown_keys(
        {"program", "builtin", "args", "outputs", "progress", "steps", "permanent_errors"});
    RunSpec run;
    run.program = r.string("program").value_or("");
    run.builtin = r.string("builtin").value_or("");
    if (int(r.has("program")) + int(r.has("builtin")) + int(r.has("steps")) != 1) {
        r.fail_here("needs exactly one of 'program', 'builtin' or 'steps'");
    }
    if (r.has("program") && run.program.empty()) r.fail_at("program", "must not be empty");
    if (r.has("steps")) {
        const toml::array* steps = r.node("steps")->as_array();
        if (steps == nullptr || steps->empty() || steps->size() > 16) {
            r.fail_at("steps", "must be an array of 1 to 16 [[run.steps]] tables");
        }
        for (std::size_t i = 0; i < steps->size(); ++i) {
            const toml::table* t = steps->get(i)->as_table();
            const std::string where = fmt::format("run.steps[{}]", i);
            if (t == nullptr) r.fail_at("steps", "each step must be a table");
            const TableReader sr(r.file(), *t, where);
            sr.reject_unknown_keys({"name", "program", "args"});
            RunStep step;
            step.name = sr.required_string("name");
            step.program = sr.required_string("program");
            if (step.program.empty()) sr.fail_at("program", "must not be empty");
            step.args = sr.strings("args");
            run.steps.push_back(std::move(step));
        }
    }
    if (r.has("builtin") && !is_valid_builtin_name(run.builtin)) {
        r.fail_at("builtin", fmt::format("'{}' is not a valid builtin name ([a-z0-9][a-z0-9_]*)",
                                         run.builtin));
    }
    run.args = r.strings("args");
    run.outputs = r.strings("outputs");
    std::set<std::string_view> seen;
    for (std::size_t i = 0; i < run.outputs.size(); ++i) {
        const std::string key = fmt::format("outputs[{}]", i);
        if (!is_valid_output_name(run.outputs[i])) {
            r.fail_at(key, fmt::format("'{}' must be a single file name (no '/', '\\', control "
                                       "characters or leading '.', at most 128 bytes)",
                                       run.outputs[i]));
        }
        if (!seen.insert(run.outputs[i]).second) {
            r.fail_at(key, fmt::format("duplicate '{}'", run.outputs[i]));
        }
    }
    run.progress = r.string("progress").value_or("none");
    if (run.progress != "none" && run.progress != "ffmpeg" && run.progress != "lines") {
        r.fail_at("progress", fmt::format("'{}' is not one of none, ffmpeg, lines", run.progress));
    }
    run.permanent_errors = r.strings("permanent_errors");
    if (run.permanent_errors.size() > max_permanent_errors) {
        r.fail_at("permanent_errors", fmt::format("at most {} entries", max_permanent_errors));
    }
    for (std::size_t i = 0; i < run.permanent_errors.size(); ++i) {
        const std::size_t size = run.permanent_errors[i].size();
        if (size == 0 || size > max_permanent_error_bytes) {
            r.fail_at(fmt::format("permanent_errors[{}]", i),
                      fmt::format("must be 1 to {} bytes", max_permanent_error_bytes));
        }
    }
    if (!run.program.empty()) run.steps.push_back(RunStep{"convert", run.program, run.args});
    return run;
}

Definition parse_definition(const std::string& file, const toml::table& doc) {
    const TableReader r(file, doc, "");
    r.reject_unknown_keys({"name", "description", "accepts", "max_upload_bytes", "min_files",
                           "max_files", "timeout_seconds", "max_attempts", "max_pixels",
                           "max_output_bytes", "params", "run"});

    Definition def;
    def.name = r.required_string("name");
    if (!is_valid_converter_name(def.name)) {
        r.fail_at("name", fmt::format("'{}' does not match [a-z0-9][a-z0-9_.-]{{0,63}}", def.name));
    }
    def.description = r.required_string("description");

    def.max_files = static_cast<std::uint32_t>(r.integer_in("max_files", 1, 0, max_files_limit));
    def.min_files = static_cast<std::uint32_t>(r.integer_in("min_files", 1, 0, max_files_limit));
    if (def.min_files > def.max_files) {
        r.fail_at("min_files",
                  fmt::format("{} is greater than max_files {}", def.min_files, def.max_files));
    }

    def.accepts = r.strings("accepts");
    std::set<std::string, std::less<>> seen_accepts;
    for (std::size_t i = 0; i < def.accepts.size(); ++i) {
        std::string& pattern = def.accepts[i];
        const std::string key = fmt::format("accepts[{}]", i);
        if (!is_valid_accept_pattern(pattern)) {
            r.fail_at(key,
                      fmt::format("'{}' is not a MIME type (type/subtype or type/*)", pattern));
        }
        pattern = ascii_lowercase(pattern);
        if (!seen_accepts.insert(pattern).second) {
            r.fail_at(key, fmt::format("duplicate '{}'", pattern));
        }
    }

    const auto max_upload = r.integer("max_upload_bytes");
    if (max_upload && *max_upload <= 0) {
        r.fail_at("max_upload_bytes", fmt::format("must be greater than 0, not {}", *max_upload));
    }
    def.max_upload_bytes = static_cast<std::uint64_t>(max_upload.value_or(0));
    if (def.max_files > 0) {
        if (def.accepts.empty()) {
            r.fail_at("accepts", "must list at least one MIME type when max_files > 0");
        }
        if (!max_upload) r.fail_at("max_upload_bytes", "is required when max_files > 0");
    }

    def.timeout = std::chrono::seconds(r.integer_in("timeout_seconds", 600, 1, 86400));
    def.max_attempts = static_cast<std::uint32_t>(r.integer_in("max_attempts", 3, 1, 100));
    if (r.has("max_output_bytes")) {
        def.max_output_bytes = static_cast<std::uint64_t>(
            r.integer_in("max_output_bytes", 0, 1, std::int64_t{1} << 43));
    }
    if (r.has("max_pixels")) {
        def.max_pixels =
            static_cast<std::uint64_t>(r.integer_in("max_pixels", 0, 1, std::int64_t{1} << 40));
    }

    if (const toml::table* params = r.table("params")) {
        if (params->size() > max_params) {
            r.fail_at("params", fmt::format("more than {} params", max_params));
        }
        for (const auto& [key, value] : *params) {
            if (!is_valid_param_name(key.str())) {
                r.fail_at(join_path("params", key.str()),
                          "param names must match [a-z][a-z0-9_]{0,31}");
            }
            def.params.push_back(parse_param(file, key.str(), value));
        }
    }

    if (const toml::table* run = r.table("run")) {
        def.run = parse_run(TableReader(file, *run, "run"));
    }
    return def;
}

Result<std::string> read_small_file(const std::filesystem::path& file) {
    std::unique_ptr<std::FILE, decltype(&std::fclose)> f(std::fopen(file.c_str(), "rb"),
                                                         &std::fclose);
    const auto fail_read = [&](int err) {
        const char* name = strerrorname_np(err);
        return fail(ErrorCode::config,
                    fmt::format("{}: cannot read: {}", file.string(), std::strerror(err)),
                    name != nullptr ? name : std::to_string(err));
    };
    if (!f) return fail_read(errno);
    std::string content;
    char buffer[16384];
    while (true) {
        const std::size_t n = std::fread(buffer, 1, sizeof buffer, f.get());
        content.append(buffer, n);
        if (content.size() > max_definition_file_bytes) {
            return fail(ErrorCode::config, fmt::format("{}: larger than {} bytes", file.string(),
                                                       max_definition_file_bytes));
        }
        if (n < sizeof buffer) break;
    }
    if (std::ferror(f.get())) return fail_read(errno != 0 ? errno : EIO);
    return content;
}

}  // namespace

const ParamSpec* Definition::param(std::string_view param_name) const {
    const auto it = std::find_if(params.begin(), params.end(),
                                 [&](const ParamSpec& p) { return p.name == param_name; });
    return it == params.end() ? nullptr : &*it;
}

Result<Definition> load_definition(const std::filesystem::path& file) {
    auto content = read_small_file(file);
    if (!content) return std::unexpected(std::move(content.error()));

    const std::string file_name = file.string();
    try {
        const toml::table doc = toml::parse(*content, file_name);
        Definition def = parse_definition(file_name, doc);
        def.source = file;
        // A relative program path with a '/' ("bin/tool") is relative to the definition's own
        // directory, so a converter can ship its helper program beside it.
        for (auto& step : def.run.steps) {
            if (step.program.find('/') != std::string::npos && step.program.front() != '/') {
                step.program =
                    std::filesystem::absolute(file.parent_path() / step.program).string();
            }
        }
        return def;
    } catch (const toml::parse_error& e) {
        return fail(ErrorCode::config, fmt::format("{}:{}:{}: {}", file_name, e.source().begin.line,
                                                   e.source().begin.column, e.description()));
    } catch (const DefinitionError& e) {
        return fail(ErrorCode::config, e.what());
    }
}

Result<std::map<std::string, Definition, std::less<>>> load_definitions(
    const std::vector<std::filesystem::path>& dirs) {
    std::map<std::string, Definition, std::less<>> out;
    for (const auto& dir : dirs) {
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec)) {
            return fail(ErrorCode::config, fmt::format("converter directory {}: {}", dir.string(),
                                                       ec ? ec.message() : "not a directory"));
        }
        std::vector<std::filesystem::path> files;
        std::filesystem::directory_iterator it(dir, ec);
        for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
            const auto& path = it->path();
            const std::string name = path.filename().string();
            // Dot files are editor backups and lock files (".#video.toml"), never definitions.
            if (name.starts_with('.') || path.extension() != ".toml") continue;
            std::error_code type_ec;
            if (it->is_regular_file(type_ec)) files.push_back(path);
        }
        if (ec) {
            return fail(ErrorCode::config,
                        fmt::format("converter directory {}: {}", dir.string(), ec.message()));
        }
        std::sort(files.begin(), files.end());

        for (const auto& file : files) {
            auto def = load_definition(file);
            if (!def) return std::unexpected(std::move(def.error()));
            if (const auto existing = out.find(def->name); existing != out.end()) {
                return fail(ErrorCode::config,
                            fmt::format("{}: name: '{}' is already defined in {}", file.string(),
                                        def->name, existing->second.source.string()));
            }
            std::string name = def->name;
            out.emplace(std::move(name), std::move(*def));
        }
    }
    return out;
}

}  // namespace kiln::converters
