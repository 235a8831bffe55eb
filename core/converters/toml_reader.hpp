#pragma once
// Typed, closed reading of the TOML tables of one converter definition file, for the parser in
// definition.cpp. Internal to core/converters.

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace kiln::converters {

// A definition file is either entirely valid or rejected with its first problem. The parser
// (definition.cpp) throws this to keep each field check to one line; load_definition turns it
// into a Result, so it never leaves core/converters.
struct DefinitionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// "a table", "an integer", ...: what a node is, for error messages.
std::string_view type_name(const toml::node& node);

// "prefix.key", or "key" at the top level.
std::string join_path(std::string_view prefix, std::string_view key);

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

}  // namespace kiln::converters
