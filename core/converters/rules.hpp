#pragma once
// What a converter definition allows in its names and types: the checks the definition parser
// applies to each field. Internal to core/converters.

#include <string>
#include <string_view>
#include <vector>

namespace kiln::converters {

std::string ascii_lowercase(std::string_view s);

// [a-z0-9][a-z0-9_.-]{0,63}
bool is_valid_converter_name(std::string_view s);
// [a-z][a-z0-9_]{0,31}: param names become {placeholders} in run templates and JSON keys.
bool is_valid_param_name(std::string_view s);
// [A-Za-z0-9][A-Za-z0-9_.+-]{0,63}: enum values end up in program arguments and output file
// names, so no separators, no option-like leading '-' and no leading '.'.
bool is_valid_enum_value(std::string_view s);
// [a-z0-9][a-z0-9_]{0,63}
bool is_valid_builtin_name(std::string_view s);
// "type/subtype" or "type/*", each an RFC 6838 restricted-name.
bool is_valid_accept_pattern(std::string_view s);
// One path component of 1..128 bytes: no '/', '\\', control characters or leading '.'.
bool is_valid_output_name(std::string_view s);

std::string join(const std::vector<std::string>& items, std::string_view separator);

}  // namespace kiln::converters
