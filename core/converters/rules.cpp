#include "core/converters/rules.hpp"

#include <algorithm>

#include "core/converters/definition.hpp"

namespace kiln::converters {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 6838 restricted-name: 1..127 characters, an alphanumeric first.
bool is_mime_token(std::string_view s) {
    if (s.empty() || s.size() > 127 || !is_alnum(s.front())) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return is_alnum(c) || std::string_view("!#$&-^_.+").find(c) != std::string_view::npos;
    });
}

}  // namespace

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

bool is_valid_param_name(std::string_view s) {
    if (s.empty() || s.size() > 32 || !(s.front() >= 'a' && s.front() <= 'z')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '_'; });
}

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

}  // namespace kiln::converters
