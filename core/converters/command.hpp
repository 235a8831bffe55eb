#pragma once
// Turning a converter's argument template into an argument vector. Values come only from
// validated params and from paths the worker chose, and each becomes exactly one argument:
// nothing is ever split or interpreted by a shell.
//
// Template syntax, per argument:
//   {input}            absolute path of the first source file
//   {output:STEM}      absolute path of the declared output whose name starts with "STEM."
//   {NAME}             the value of param NAME (string, integer or true/false)
//   {seek:S}           S seconds, or half the input's duration when that is shorter
//                      (needs_duration() tells the worker to probe it first)
//   {?NAME}rest        "rest" (expanded) only when param NAME has a value, else no argument
//   {?NAME=VALUE}rest  "rest" only when param NAME equals VALUE
//   {!NAME}rest        "rest" only when param NAME has no value

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace kiln::converters {

struct ExpansionContext {
    nlohmann::json params;             // validated, normalised
    std::filesystem::path input;       // first source
    std::filesystem::path workdir;     // outputs are written here
    std::vector<std::string> outputs;  // declared outputs, already expanded
    double duration = 0;               // the input's duration in s, 0 when unknown
};

// True when the template uses {seek:...}, so the input's duration must be probed first.
bool needs_duration(const std::vector<std::string>& args_template);

// Expands one output name template ("video.{format}") with the params. Fails with
// invalid_request on an unknown placeholder or a value that would not be a plain file name.
Result<std::string> expand_output_name(const std::string& name_template,
                                       const nlohmann::json& params);

// Expands a whole argument template. Fails with config on an unknown placeholder or an
// unterminated brace (a broken definition, not bad client input).
Result<std::vector<std::string>> expand_args(const std::vector<std::string>& args_template,
                                             const ExpansionContext& ctx);

}  // namespace kiln::converters
