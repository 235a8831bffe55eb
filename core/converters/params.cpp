// Client params checked against a converter's [params] specs, and the public description of a
// converter served by GET /api/v1/types.

#include <algorithm>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "core/converters/definition.hpp"
#include "core/converters/rules.hpp"

namespace kiln::converters {
namespace {

constexpr std::size_t max_param_string_bytes = 256;

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
            // floats (720.0 included), strings and booleans. Say which: "90" is in the range
            // a client reads in the message, and the quotes are easy to miss.
            if (!value.is_number_integer()) {
                const std::string got = value.is_number_float()
                                            ? "a number with a fraction"
                                            : std::string("a JSON ") + value.type_name();
                return fail(ErrorCode::invalid_request,
                            fmt::format("param '{}' for {} must be an integer from {} to {}, "
                                        "not {}",
                                        spec.name, def.name, spec.min, spec.max, got));
            }
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
    if (def.max_output_bytes) out["max_output_bytes"] = *def.max_output_bytes;
    return out;
}

}  // namespace kiln::converters
