#include "core/util/json_limits.hpp"

#include <set>
#include <string>
#include <vector>

namespace kiln::util {
namespace {

bool nesting_within(std::string_view text, int max_depth) {
    int depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > max_depth) return false;
        } else if (c == '}' || c == ']')
            --depth;
    }
    return true;
}

}  // namespace

Result<nlohmann::json> parse_client_json(std::string_view text, std::string_view what) {
    // JSON never contains a raw NUL, and nlohmann's lexer would stop at one and ignore the rest:
    // a body must not carry bytes the service silently skips.
    if (text.find('\0') != std::string_view::npos) {
        return fail(ErrorCode::invalid_request, std::string(what) + " is not valid JSON");
    }
    if (!nesting_within(text, max_json_depth)) {
        return fail(ErrorCode::invalid_request,
                    std::string(what) + " nests deeper than " + std::to_string(max_json_depth));
    }
    // A key given twice in one object is refused: parsers differ on which one counts (nlohmann
    // keeps the last, others the first), and a proxy and kiln must not read different requests.
    std::vector<std::set<std::string>> open_objects;
    std::optional<std::string> repeated;
    // An escaped NUL (\u0000) in a key or a string is refused like a raw one: no field kiln
    // reads may hold it, and names and texts with a NUL cut short in C and in logs.
    bool escaped_nul = false;
    auto watch_keys = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using Event = nlohmann::json::parse_event_t;
        if ((event == Event::key || event == Event::value) && parsed.is_string() &&
            parsed.get_ref<const std::string&>().find('\0') != std::string::npos) {
            escaped_nul = true;
        }
        if (event == Event::object_start) {
            open_objects.emplace_back();
        } else if (event == Event::object_end && !open_objects.empty()) {
            open_objects.pop_back();
        } else if (event == Event::key && !open_objects.empty() && !repeated &&
                   !open_objects.back().insert(parsed.get<std::string>()).second) {
            repeated = parsed.get<std::string>();
        }
        return true;
    };
    auto value = nlohmann::json::parse(text, watch_keys, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
        return fail(ErrorCode::invalid_request, std::string(what) + " is not valid JSON");
    }
    if (escaped_nul) {
        return fail(ErrorCode::invalid_request,
                    std::string(what) + " contains a NUL character (\\u0000)");
    }
    if (repeated) {
        return fail(ErrorCode::invalid_request,
                    std::string(what) + " gives the member '" + *repeated + "' twice");
    }
    return value;
}

}  // namespace kiln::util
