// Fuzzes parse_client_json, the entry for every JSON request body and params field.
//
// Input: the JSON text.
//
// nlohmann::json without the depth limit is the oracle: parse_client_json must accept exactly
// the texts it accepts that nest at most max_json_depth deep, give no member twice in one
// object and hold no NUL (U+0000) in a key or string (told by nlohmann's SAX events, apart from
// kiln's parse callback), and return the same value. An accepted value must survive dump() (kiln
// stores and echoes client JSON) and parse back equal.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "core/util/json_limits.hpp"

namespace {

// Finding reported with these targets: nlohmann's lexer takes a NUL byte for the end of the
// input, so parse_client_json accepts "{...}\0anything" as "{...}" (and rejects it only when
// the bytes after the NUL nest too deep). RFC 8259 allows no raw NUL anywhere in a JSON text.
// Set to false once parse_client_json rejects NUL bytes.
constexpr bool tolerate_nul_truncation = false;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "json fuzz: invariant violated: %s\n", what);
    std::abort();
}

// Objects and arrays count one level each; scalars none.
int depth(const nlohmann::json& value) {
    if (!value.is_structured()) return 0;
    int deepest = 0;
    for (const auto& item : value) deepest = std::max(deepest, depth(item));
    return deepest + 1;
}

// Floats outside double's range: dump() writes them as null, so they do not round-trip.
bool has_non_finite(const nlohmann::json& value) {
    if (value.is_number_float()) return !std::isfinite(value.get<double>());
    if (!value.is_structured()) return false;  // iterating a scalar visits the scalar itself
    for (const auto& item : value) {
        if (has_non_finite(item)) return true;
    }
    return false;
}

// SAX events of a valid text: whether some object gives a key twice, and whether a key or a
// string holds U+0000.
struct RefusedContent : nlohmann::json_sax<nlohmann::json> {
    std::vector<std::set<std::string>> objects;
    bool found = false;
    static bool has_nul(const string_t& s) { return s.find('\0') != string_t::npos; }
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t& s) override {
        found = found || has_nul(s);
        return true;
    }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override {
        objects.emplace_back();
        return true;
    }
    bool key(string_t& k) override {
        found = found || has_nul(k) || !objects.back().insert(k).second;
        return true;
    }
    bool end_object() override {
        objects.pop_back();
        return true;
    }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }
};

bool has_refused_content(std::string_view text) {
    RefusedContent sax;
    nlohmann::json::sax_parse(text, &sax, nlohmann::json::input_format_t::json, false);
    return sax.found;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    const auto parsed = kiln::util::parse_client_json(text, "body");
    // Inputs are at most a few KiB, so the unbounded parse (and depth()) stays cheap here.
    const auto oracle = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    const bool has_nul = text.find('\0') != std::string_view::npos;
    const bool oracle_accepts = !has_nul && !oracle.is_discarded() &&
                                depth(oracle) <= kiln::util::max_json_depth &&
                                !has_refused_content(text);
    if (parsed && has_nul) {
        if (tolerate_nul_truncation) return 0;
        violated("accepted a text with a NUL byte");
    }

    if (!parsed) {
        if (parsed.error().code != kiln::ErrorCode::invalid_request) {
            violated("failed with a code other than invalid_request");
        }
        if (!parsed.error().message.starts_with("body ")) violated("message does not name what");
        if (oracle_accepts) violated("valid JSON within the depth limit was rejected");
        return 0;
    }
    if (!oracle_accepts) violated("accepted what nlohmann rejects or what nests too deep");
    if (*parsed != oracle) violated("value differs from nlohmann's");
    if (depth(*parsed) > kiln::util::max_json_depth) violated("accepted value nests too deep");

    std::string dumped;
    try {
        dumped = parsed->dump();
    } catch (const nlohmann::json::exception& e) {
        std::fprintf(stderr, "json fuzz: dump() threw: %s\n", e.what());
        violated("accepted value cannot be dumped");
    }
    if (has_non_finite(*parsed)) return 0;
    const auto again = kiln::util::parse_client_json(dumped, "body");
    if (!again || *again != *parsed) violated("dump() does not parse back to the same value");
    return 0;
}
