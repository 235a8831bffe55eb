// Fuzzes validate_params against the shipped converter definitions (converters/,
// tests/converters/, tests/converters-controlled/), with the params text going through
// parse_client_json first, as an upload's params field does.
//
// Input: byte 0 picks the definition (modulo their number, in name order); the rest is the
// params JSON text.
//
// On success the result must be an object holding only the definition's params, each of its
// type and within its values or range, every required param and every param with a default,
// the client's values unchanged; and validating the result again must give the result.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/converters/definition.hpp"
#include "core/result.hpp"
#include "core/util/json_limits.hpp"

namespace {

using kiln::converters::Definition;
using kiln::converters::ParamSpec;

std::vector<Definition> definitions;

[[noreturn]] void violated(const Definition& def, const char* what) {
    std::fprintf(stderr, "params fuzz (%s): invariant violated: %s\n", def.name.c_str(), what);
    std::abort();
}

bool value_allowed(const ParamSpec& spec, const nlohmann::json& value) {
    switch (spec.kind) {
        case ParamSpec::Kind::enumeration: {
            const auto* text = value.get_ptr<const std::string*>();
            return text != nullptr &&
                   std::find(spec.values.begin(), spec.values.end(), *text) != spec.values.end();
        }
        case ParamSpec::Kind::integer:
            if (!value.is_number_integer()) return false;
            if (value.is_number_unsigned()) {
                const auto u = value.get<std::uint64_t>();
                if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                    return false;
                }
            }
            return value.get<std::int64_t>() >= spec.min && value.get<std::int64_t>() <= spec.max;
        case ParamSpec::Kind::boolean:
            return value.is_boolean();
    }
    return false;
}

void check_result(const Definition& def, const nlohmann::json& params,
                  const nlohmann::json& result) {
    if (!result.is_object()) violated(def, "result is not an object");
    for (const auto& [key, value] : result.items()) {
        const ParamSpec* spec = def.param(key);
        if (spec == nullptr) violated(def, "result holds an unknown param");
        if (!value_allowed(*spec, value)) violated(def, "result holds a value out of range");
        const bool from_client = params.is_object() && params.contains(key);
        if (from_client && params.at(key) != value) violated(def, "a client value was changed");
        if (!from_client && value != spec->default_value) {
            violated(def, "a param the client did not send is not its default");
        }
    }
    for (const ParamSpec& spec : def.params) {
        if ((spec.required || !spec.default_value.is_null()) && !result.contains(spec.name)) {
            violated(def, "a required or defaulted param is missing");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
    const std::filesystem::path root = KILN_SOURCE_DIR;
    auto loaded = kiln::converters::load_definitions(
        {root / "converters", root / "tests/converters", root / "tests/converters-controlled"});
    if (!loaded || loaded->empty()) {
        std::fprintf(stderr, "params fuzz: cannot load the converter definitions: %s\n",
                     loaded ? "none found" : loaded.error().describe().c_str());
        std::exit(1);
    }
    for (auto& [name, def] : *loaded) definitions.push_back(std::move(def));
    for (const Definition& def : definitions) {
        // Every shipped default must itself pass validation.
        for (const ParamSpec& spec : def.params) {
            if (!spec.default_value.is_null() && !value_allowed(spec, spec.default_value)) {
                violated(def, "a shipped default is out of range");
            }
        }
        (void)kiln::converters::to_public_json(def).dump();
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const Definition& def = definitions[data[0] % definitions.size()];
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

    auto params = kiln::util::parse_client_json(text, "params");
    if (!params) return 0;
    auto result = kiln::converters::validate_params(def, *params);
    if (!result) {
        if (result.error().code != kiln::ErrorCode::invalid_request) {
            violated(def, "validation failed with a code other than invalid_request");
        }
        if (result.error().message.empty()) violated(def, "validation error without a message");
        return 0;
    }
    check_result(def, *params, *result);

    auto again = kiln::converters::validate_params(def, *result);
    if (!again || *again != *result) violated(def, "validating the result again changed it");
    // The normalised params are stored and shown as JSON text.
    (void)result->dump();
    return 0;
}
