#include "core/config.hpp"

#include <cstdlib>
#include <string>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace kiln {
namespace {

// Rejects keys the schema does not know, so a typo fails loudly instead of being ignored.
Result<> check_keys(const toml::table& table, std::string_view section,
                    std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : table) {
        bool found = false;
        for (auto k : known) found = found || k == key.str();
        if (!found) {
            return fail(ErrorCode::config, fmt::format("config: unknown key '{}{}{}'", section,
                                                       section.empty() ? "" : ".", key.str()));
        }
    }
    return {};
}

const toml::table* section(const toml::table& root, std::string_view name) {
    return root[name].as_table();
}

template <typename T>
Result<> read(const toml::table* table, std::string_view section_name, std::string_view key,
              T& out) {
    if (table == nullptr) return {};
    const toml::node* node = table->get(key);
    if (node == nullptr) return {};
    auto bad = [&] {
        return fail(ErrorCode::config,
                    fmt::format("config: '{}.{}' has the wrong type", section_name, key));
    };
    if constexpr (std::is_same_v<T, std::string>) {
        auto v = node->value<std::string>();
        if (!v) return bad();
        out = *v;
    } else if constexpr (std::is_same_v<T, std::filesystem::path>) {
        auto v = node->value<std::string>();
        if (!v) return bad();
        out = *v;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>> ||
                         std::is_same_v<T, std::vector<std::filesystem::path>>) {
        const toml::array* arr = node->as_array();
        if (arr == nullptr) return bad();
        out.clear();
        for (const auto& item : *arr) {
            auto v = item.value<std::string>();
            if (!v) return bad();
            out.emplace_back(*v);
        }
    } else if constexpr (std::is_same_v<T, std::chrono::seconds> ||
                         std::is_same_v<T, std::chrono::milliseconds>) {
        auto v = node->value<std::int64_t>();
        if (!v || *v < 0) return bad();
        out = T{*v};
    } else {
        auto v = node->value<std::int64_t>();
        if (!v || *v < 0) return bad();
        out = static_cast<T>(*v);
    }
    return {};
}

Result<> apply_file(const toml::table& root, Config& cfg) {
    if (auto r =
            check_keys(root, "", {"database", "storage", "converters", "api", "worker", "wakeup"});
        !r)
        return r;

    const auto* db = section(root, "database");
    if (db != nullptr) {
        if (auto r = check_keys(
                *db, "database",
                {"socket", "host", "port", "user", "password", "name", "connect_timeout_seconds"});
            !r)
            return r;
    }
    auto& d = cfg.database;
    for (auto r :
         {read(db, "database", "socket", d.socket), read(db, "database", "host", d.host),
          read(db, "database", "port", d.port), read(db, "database", "user", d.user),
          read(db, "database", "password", d.password), read(db, "database", "name", d.name),
          read(db, "database", "connect_timeout_seconds", d.connect_timeout)}) {
        if (!r) return r;
    }

    const auto* storage = section(root, "storage");
    if (storage != nullptr) {
        if (auto r = check_keys(*storage, "storage", {"root"}); !r) return r;
    }
    if (auto r = read(storage, "storage", "root", cfg.storage_root); !r) return r;

    const auto* conv = section(root, "converters");
    if (conv != nullptr) {
        if (auto r = check_keys(*conv, "converters", {"dirs"}); !r) return r;
    }
    if (auto r = read(conv, "converters", "dirs", cfg.converter_dirs); !r) return r;

    const auto* wakeup = section(root, "wakeup");
    if (wakeup != nullptr) {
        if (auto r = check_keys(*wakeup, "wakeup", {"dir"}); !r) return r;
    }
    if (auto r = read(wakeup, "wakeup", "dir", cfg.wakeup_dir); !r) return r;

    const auto* api = section(root, "api");
    if (api != nullptr) {
        if (auto r = check_keys(*api, "api",
                                {"listen", "threads", "upload_threads", "max_request_bytes",
                                 "max_parts", "max_part_header_bytes", "max_field_bytes",
                                 "max_json_body_bytes", "queue_position_cap"});
            !r)
            return r;
    }
    auto& a = cfg.api;
    for (auto r : {read(api, "api", "listen", a.listen), read(api, "api", "threads", a.threads),
                   read(api, "api", "upload_threads", a.upload_threads),
                   read(api, "api", "max_request_bytes", a.max_request_bytes),
                   read(api, "api", "max_parts", a.max_parts),
                   read(api, "api", "max_part_header_bytes", a.max_part_header_bytes),
                   read(api, "api", "max_field_bytes", a.max_field_bytes),
                   read(api, "api", "max_json_body_bytes", a.max_json_body_bytes),
                   read(api, "api", "queue_position_cap", a.queue_position_cap)}) {
        if (!r) return r;
    }

    const auto* worker = section(root, "worker");
    if (worker != nullptr) {
        if (auto r = check_keys(*worker, "worker",
                                {"name", "slots", "prefetch", "types", "poll_min_ms", "poll_max_ms",
                                 "lease_seconds", "grace_seconds"});
            !r)
            return r;
    }
    auto& w = cfg.worker;
    for (auto r :
         {read(worker, "worker", "name", w.name), read(worker, "worker", "slots", w.slots),
          read(worker, "worker", "prefetch", w.prefetch), read(worker, "worker", "types", w.types),
          read(worker, "worker", "poll_min_ms", w.poll_min),
          read(worker, "worker", "poll_max_ms", w.poll_max),
          read(worker, "worker", "lease_seconds", w.lease),
          read(worker, "worker", "grace_seconds", w.grace)}) {
        if (!r) return r;
    }
    return {};
}

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? v : nullptr;
}

Result<> apply_environment(Config& cfg) {
    if (const char* v = env("KILN_DB")) {
        if (auto r = parse_database_url(v, cfg.database); !r) return r;
    }
    if (const char* v = env("KILN_STORAGE")) cfg.storage_root = v;
    if (const char* v = env("KILN_API_LISTEN")) cfg.api.listen = v;
    if (const char* v = env("KILN_WAKEUP")) cfg.wakeup_dir = v;
    if (const char* v = env("KILN_CONVERTERS")) {
        cfg.converter_dirs.clear();
        std::string_view rest = v;
        while (!rest.empty()) {
            auto colon = rest.find(':');
            auto part = rest.substr(0, colon);
            if (!part.empty()) cfg.converter_dirs.emplace_back(part);
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    return {};
}

Result<> validate(const Config& cfg) {
    if (cfg.api.threads == 0 || cfg.api.threads > 1024)
        return fail(ErrorCode::config, "config: api.threads must be 1..1024");
    if (cfg.api.upload_threads == 0 || cfg.api.upload_threads > 1024)
        return fail(ErrorCode::config, "config: api.upload_threads must be 1..1024");
    if (cfg.worker.slots == 0 || cfg.worker.slots > 256)
        return fail(ErrorCode::config, "config: worker.slots must be 1..256");
    if (cfg.worker.prefetch > 256)
        return fail(ErrorCode::config, "config: worker.prefetch must be 0..256");
    if (cfg.worker.lease < std::chrono::seconds(2) || cfg.worker.lease > std::chrono::hours(1))
        return fail(ErrorCode::config, "config: worker.lease_seconds must be 2..3600");
    if (cfg.worker.grace > std::chrono::hours(1))
        return fail(ErrorCode::config, "config: worker.grace_seconds must be 0..3600");
    if (cfg.worker.poll_min < std::chrono::milliseconds(10) ||
        cfg.worker.poll_max > std::chrono::minutes(1) || cfg.worker.poll_min > cfg.worker.poll_max)
        return fail(ErrorCode::config,
                    "config: worker.poll_min_ms must be 10..worker.poll_max_ms, and "
                    "worker.poll_max_ms at most 60000");
    if (cfg.storage_root.empty() || !cfg.storage_root.is_absolute())
        return fail(ErrorCode::config, "config: storage.root must be an absolute path");
    if (cfg.api.max_parts == 0) return fail(ErrorCode::config, "config: api.max_parts must be > 0");
    if (cfg.api.queue_position_cap == 0 || cfg.api.queue_position_cap > 100000)
        return fail(ErrorCode::config, "config: api.queue_position_cap must be 1..100000");
    return {};
}

}  // namespace

Result<> parse_database_url(std::string_view url, DatabaseConfig& db) {
    auto bad = [&] {
        return fail(ErrorCode::config,
                    "config: KILN_DB must look like mariadb://user[:password]@host[:port]/name"
                    "[?socket=/path]");
    };
    constexpr std::string_view scheme = "mariadb://";
    if (!url.starts_with(scheme)) return bad();
    url.remove_prefix(scheme.size());
    auto at = url.rfind('@');
    if (at == std::string_view::npos) return bad();
    auto credentials = url.substr(0, at);
    url.remove_prefix(at + 1);
    auto colon = credentials.find(':');
    db.user = std::string(credentials.substr(0, colon));
    db.password = colon == std::string_view::npos ? "" : std::string(credentials.substr(colon + 1));
    if (db.user.empty()) return bad();

    auto slash = url.find('/');
    if (slash == std::string_view::npos) return bad();
    auto hostport = url.substr(0, slash);
    url.remove_prefix(slash + 1);
    auto query = url.find('?');
    db.name = std::string(url.substr(0, query));
    if (db.name.empty()) return bad();
    db.socket.clear();
    if (query != std::string_view::npos) {
        auto q = url.substr(query + 1);
        if (!q.starts_with("socket=")) return bad();
        db.socket = std::string(q.substr(7));
    }
    auto pcolon = hostport.rfind(':');
    if (pcolon != std::string_view::npos) {
        db.host = std::string(hostport.substr(0, pcolon));
        try {
            db.port = static_cast<unsigned>(std::stoul(std::string(hostport.substr(pcolon + 1))));
        } catch (const std::exception&) {
            return bad();
        }
    } else {
        db.host = std::string(hostport);
    }
    return {};
}

Result<Config> load_config(const std::optional<std::filesystem::path>& explicit_path) {
    Config cfg;
    std::filesystem::path path = default_config_path;
    bool required = false;
    if (explicit_path) {
        path = *explicit_path;
        required = true;
    } else if (const char* v = env("KILN_CONFIG")) {
        path = v;
        required = true;
    }

    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
        try {
            toml::table root = toml::parse_file(path.string());
            if (auto r = apply_file(root, cfg); !r) {
                return fail(r.error().code, path.string() + ": " + r.error().message);
            }
            cfg.file = path;
        } catch (const toml::parse_error& e) {
            return fail(ErrorCode::config, fmt::format("{}:{}: {}", path.string(),
                                                       e.source().begin.line, e.description()));
        }
    } else if (required) {
        return fail(ErrorCode::config, "config: cannot read " + path.string());
    }
    if (auto r = apply_environment(cfg); !r) return std::unexpected(r.error());
    if (auto r = validate(cfg); !r) return std::unexpected(r.error());
    return cfg;
}

}  // namespace kiln
