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
//
// Every table is closed: an unknown key is an error, so a typo never silently becomes a default.

#include "core/converters/definition.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace kiln::converters {
namespace {

constexpr std::size_t max_definition_file_bytes = 1 << 20;
constexpr std::size_t max_params = 32;
constexpr std::size_t max_param_string_bytes = 256;
constexpr std::uint32_t max_files_limit = 64;

// A definition file is either entirely valid or rejected with its first problem. Inside this file
// the parser throws this to keep each field check to one line; load_definition turns it into a
// Result, so it never crosses the module boundary.
struct DefinitionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string ascii_lowercase(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
    return out;
}

bool is_valid_converter_name(std::string_view s) {
    if (s.empty() || s.size() > 64 || !is_lower_alnum(s.front())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return is_lower_alnum(c) || c == '_' || c == '.' || c == '-';
    });
}

// Param names become {placeholders} in run templates and JSON keys for clients.
bool is_valid_param_name(std::string_view s) {
    if (s.empty() || s.size() > 32 || !(s.front() >= 'a' && s.front() <= 'z')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '_'; });
}

// Enum values end up in program arguments and output file names: no separators, no option-like
// leading '-', no leading '.'.
bool is_valid_enum_value(std::string_view s) {
    if (s.empty() || s.size() > 64 || !is_alnum(s.front())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return is_alnum(c) || c == '_' || c == '.' || c == '+' || c == '-';
    });
}

bool is_valid_builtin_name(std::string_view s) {
    if (s.empty() || s.size() > 64 || !is_lower_alnum(s.front())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '_'; });
}

// RFC 6838 restricted-name: 1..127 characters, an alphanumeric first.
bool is_mime_token(std::string_view s) {
    if (s.empty() || s.size() > 127 || !is_alnum(s.front())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return is_alnum(c) || std::string_view("!#$&-^_.+").find(c) != std::string_view::npos;
    });
}

// "type/subtype" or "type/*".
bool is_valid_accept_pattern(std::string_view s) {
    const auto slash = s.find('/');
    if (slash == std::string_view::npos) return false;
    const auto type = s.substr(0, slash);
    const auto subtype = s.substr(slash + 1);
    return is_mime_token(type) && (subtype == "*" || is_mime_token(subtype));
}

bool is_valid_output_name(std::string_view s) {
    if (s.empty() || s.size() > 128 || s.front() == '.') return false;
    return std::none_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return c == '/' || c == '\\' || u < 0x20 || u == 0x7f;
    });
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += separator;
        out += item;
    }
    return out;
}

std::string join_path(std::string_view prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : fmt::format("{}.{}", prefix, key);
}

std::string_view type_name(const toml::node& node) {
    switch (node.type()) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
        case toml::node_type::time:
        case toml::node_type::date_time:
            return "a date/time";
        case toml::node_type::none:
            break;
    }
    return "a value";
}

// Reads typed fields from one table of one file and reports problems as "<file>: <key>: <problem>".
class TableReader {
  public:
    TableReader(const std::string& file, const toml::table& table, std::string prefix)
        : file_(file), table_(table), prefix_(std::move(prefix)) {}

    [[noreturn]] void fail_at(std::string_view key, std::string_view problem) const {
        throw DefinitionError(fmt::format("{}: {}: {}", file_, join_path(prefix_, key), problem));
    }

    [[noreturn]] void fail_here(std::string_view problem) const {
        if (prefix_.empty()) throw DefinitionError(fmt::format("{}: {}", file_, problem));
        throw DefinitionError(fmt::format("{}: {}: {}", file_, prefix_, problem));
    }

    void reject_unknown_keys(std::initializer_list<std::string_view> allowed) const {
        for (const auto& [key, value] : table_) {
            if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
            std::string names;
            for (auto name : allowed) {
                if (!names.empty()) names += ", ";
                names += name;
            }
            fail_at(key.str(), fmt::format("unknown key (expected one of: {})", names));
        }
    }

    [[nodiscard]] bool has(std::string_view key) const { return table_.contains(key); }

    [[nodiscard]] const toml::node* node(std::string_view key) const { return table_.get(key); }

    [[nodiscard]] std::optional<std::string> string(std::string_view key) const {
        const toml::node* n = table_.get(key);
        if (n == nullptr) return std::nullopt;
        if (!n->is_string()) fail_at(key, fmt::format("must be a string, not {}", type_name(*n)));
        const std::string& value = n->as_string()->get();
        if (value.find('\0') != std::string::npos) fail_at(key, "must not contain NUL");
        return value;
    }

    [[nodiscard]] std::string required_string(std::string_view key) const {
        auto value = string(key);
        if (!value) fail_at(key, "is required");
        return *value;
    }

    [[nodiscard]] std::optional<std::int64_t> integer(std::string_view key) const {
        const toml::node* n = table_.get(key);
        if (n == nullptr) return std::nullopt;
        if (!n->is_integer())
            fail_at(key, fmt::format("must be an integer, not {}", type_name(*n)));
        return n->as_integer()->get();
    }

    [[nodiscard]] std::int64_t integer_in(std::string_view key, std::int64_t fallback,
                                          std::int64_t min, std::int64_t max) const {
        const std::int64_t value = integer(key).value_or(fallback);
        if (value < min || value > max) {
            fail_at(key, fmt::format("must be between {} and {}, not {}", min, max, value));
        }
        return value;
    }

    [[nodiscard]] std::optional<bool> boolean(std::string_view key) const {
        const toml::node* n = table_.get(key);
        if (n == nullptr) return std::nullopt;
        if (!n->is_boolean()) fail_at(key, fmt::format("must be a boolean, not {}", type_name(*n)));
        return n->as_boolean()->get();
    }

    [[nodiscard]] std::vector<std::string> strings(std::string_view key) const {
        std::vector<std::string> out;
        const toml::node* n = table_.get(key);
        if (n == nullptr) return out;
        if (!n->is_array()) {
            fail_at(key, fmt::format("must be an array of strings, not {}", type_name(*n)));
        }
        std::size_t index = 0;
        for (const toml::node& item : *n->as_array()) {
            const std::string item_key = fmt::format("{}[{}]", key, index++);
            if (!item.is_string()) {
                fail_at(item_key, fmt::format("must be a string, not {}", type_name(item)));
            }
            const std::string& value = item.as_string()->get();
            if (value.find('\0') != std::string::npos) fail_at(item_key, "must not contain NUL");
            out.push_back(value);
        }
        return out;
    }

    [[nodiscard]] const toml::table* table(std::string_view key) const {
        const toml::node* n = table_.get(key);
        if (n == nullptr) return nullptr;
        if (!n->is_table()) fail_at(key, fmt::format("must be a table, not {}", type_name(*n)));
        return n->as_table();
    }

    [[nodiscard]] const std::string& file() const { return file_; }
    [[nodiscard]] const std::string& prefix() const { return prefix_; }
    [[nodiscard]] const toml::table& raw() const { return table_; }

  private:
    const std::string& file_;
    const toml::table& table_;
    std::string prefix_;
};

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
    r.reject_unknown_keys({"program", "builtin", "args", "outputs", "progress", "steps"});
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
    if (!run.program.empty()) run.steps.push_back(RunStep{"convert", run.program, run.args});
    return run;
}

Definition parse_definition(const std::string& file, const toml::table& doc) {
    const TableReader r(file, doc, "");
    r.reject_unknown_keys({"name", "description", "accepts", "max_upload_bytes", "min_files",
                           "max_files", "timeout_seconds", "max_attempts", "max_pixels", "params",
                           "run"});

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

// Client-supplied text echoed in an error message: printable ASCII only, bounded.
std::string quote_for_message(std::string_view s) {
    constexpr std::size_t max_bytes = 64;
    std::string out;
    for (char c : s.substr(0, max_bytes)) {
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    if (s.size() > max_bytes) out += "...";
    return out;
}

Result<nlohmann::json> check_param_value(const Definition& def, const ParamSpec& spec,
                                         const nlohmann::json& value) {
    switch (spec.kind) {
        case ParamSpec::Kind::enumeration: {
            const auto* text = value.get_ptr<const std::string*>();
            if (text != nullptr && text->size() > max_param_string_bytes) {
                return fail(ErrorCode::invalid_request,
                            fmt::format("param '{}' for {} is longer than {} bytes", spec.name,
                                        def.name, max_param_string_bytes));
            }
            if (text == nullptr ||
                std::find(spec.values.begin(), spec.values.end(), *text) == spec.values.end()) {
                return fail(ErrorCode::invalid_request,
                            fmt::format("param '{}' for {} must be one of: {}", spec.name, def.name,
                                        join(spec.values, ", ")));
            }
            return value;
        }
        case ParamSpec::Kind::integer: {
            const auto out_of_range = [&] {
                return fail(ErrorCode::invalid_request,
                            fmt::format("param '{}' for {} must be an integer from {} to {}",
                                        spec.name, def.name, spec.min, spec.max));
            };
            // is_number_integer() is true for signed and unsigned JSON integers, false for
            // floats (720.0 included), strings and booleans.
            if (!value.is_number_integer()) return out_of_range();
            std::int64_t number = 0;
            if (value.is_number_unsigned()) {
                const auto u = value.get<std::uint64_t>();
                if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                    return out_of_range();
                }
                number = static_cast<std::int64_t>(u);
            } else {
                number = value.get<std::int64_t>();
            }
            if (number < spec.min || number > spec.max) return out_of_range();
            return nlohmann::json(number);
        }
        case ParamSpec::Kind::boolean:
            if (!value.is_boolean()) {
                return fail(
                    ErrorCode::invalid_request,
                    fmt::format("param '{}' for {} must be true or false", spec.name, def.name));
            }
            return value;
    }
    return fail(ErrorCode::internal, "unknown param kind");
}

std::string_view kind_name(ParamSpec::Kind kind) {
    switch (kind) {
        case ParamSpec::Kind::enumeration:
            return "enum";
        case ParamSpec::Kind::integer:
            return "integer";
        case ParamSpec::Kind::boolean:
            return "boolean";
    }
    return "enum";
}

}  // namespace

bool Definition::accepts_mime(std::string_view mime) const {
    const auto semicolon = mime.find(';');
    if (semicolon != std::string_view::npos) mime = mime.substr(0, semicolon);
    while (!mime.empty() && (mime.front() == ' ' || mime.front() == '\t')) mime.remove_prefix(1);
    while (!mime.empty() && (mime.back() == ' ' || mime.back() == '\t')) mime.remove_suffix(1);

    // A file's type is never a pattern: "video/*" or a malformed type matches nothing.
    const auto slash = mime.find('/');
    if (slash == std::string_view::npos || !is_mime_token(mime.substr(0, slash)) ||
        !is_mime_token(mime.substr(slash + 1))) {
        return false;
    }
    const std::string type = ascii_lowercase(mime);
    const std::string_view major = std::string_view(type).substr(0, slash + 1);  // "video/"

    return std::any_of(accepts.begin(), accepts.end(), [&](const std::string& pattern) {
        if (pattern.size() >= 2 && pattern.ends_with("/*")) {
            return std::string_view(pattern).substr(0, pattern.size() - 1) == major;
        }
        return pattern == type;
    });
}

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

Result<nlohmann::json> validate_params(const Definition& def, const nlohmann::json& params) {
    if (!params.is_null() && !params.is_object()) {
        return fail(ErrorCode::invalid_request, "params must be a JSON object");
    }
    if (params.size() > max_params) {
        return fail(ErrorCode::invalid_request,
                    fmt::format("params has more than {} keys", max_params));
    }

    auto out = nlohmann::json::object();
    if (params.is_object()) {
        for (const auto& [key, value] : params.items()) {
            const ParamSpec* spec = def.param(key);
            if (spec == nullptr) {
                return fail(
                    ErrorCode::invalid_request,
                    fmt::format("unknown param '{}' for {}", quote_for_message(key), def.name));
            }
            auto checked = check_param_value(def, *spec, value);
            if (!checked) return std::unexpected(std::move(checked.error()));
            out[key] = std::move(*checked);
        }
    }

    for (const auto& spec : def.params) {
        if (out.contains(spec.name)) continue;
        if (!spec.default_value.is_null()) {
            out[spec.name] = spec.default_value;
        } else if (spec.required) {
            return fail(ErrorCode::invalid_request,
                        fmt::format("missing required param '{}' for {}", spec.name, def.name));
        }
    }
    return out;
}

nlohmann::json to_public_json(const Definition& def) {
    auto params = nlohmann::json::object();
    for (const auto& spec : def.params) {
        nlohmann::json p = {
            {"type", std::string(kind_name(spec.kind))},
            {"required", spec.required},
            {"description", spec.description},
        };
        if (spec.kind == ParamSpec::Kind::enumeration) p["values"] = spec.values;
        if (spec.kind == ParamSpec::Kind::integer) {
            p["min"] = spec.min;
            p["max"] = spec.max;
        }
        if (!spec.default_value.is_null()) p["default"] = spec.default_value;
        params[spec.name] = std::move(p);
    }
    nlohmann::json out = {
        {"name", def.name},
        {"description", def.description},
        {"accepts", def.accepts},
        {"max_upload_bytes", def.max_upload_bytes},
        {"min_files", def.min_files},
        {"max_files", def.max_files},
        {"timeout_seconds", def.timeout.count()},
        {"max_attempts", def.max_attempts},
        {"params", std::move(params)},
    };
    if (def.max_pixels) out["max_pixels"] = *def.max_pixels;
    return out;
}

}  // namespace kiln::converters
