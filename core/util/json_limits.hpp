#pragma once
// Parsing JSON from clients with limits: size is bounded by the caller, nesting here, before the
// text reaches the parser (deep nesting costs stack and time in parsers and destructors).

#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace kiln::util {

inline constexpr int max_json_depth = 16;

// Parses `text`; fails with invalid_request naming `what` when it is not valid JSON, nests
// deeper than max_json_depth, or gives a member twice in one object.
Result<nlohmann::json> parse_client_json(std::string_view text, std::string_view what);

}  // namespace kiln::util
