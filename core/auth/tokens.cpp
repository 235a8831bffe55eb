#include "core/auth/tokens.hpp"

#include <algorithm>
#include <cctype>

#include "core/util/crypto.hpp"
#include "core/util/time.hpp"

namespace kiln::auth {

std::optional<std::string> bearer_token(std::string_view authorization) {
    constexpr std::string_view scheme = "bearer ";
    if (authorization.size() <= scheme.size()) return std::nullopt;
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i])
            return std::nullopt;
    }
    auto token = authorization.substr(scheme.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    if (token.empty() || token.size() > 256) return std::nullopt;
    return std::string(token);
}

Result<std::optional<jobs::Viewer>> authenticate(db::Connection& conn, const std::string& token) {
    auto rows = conn.query(
        "SELECT owner, is_admin FROM tokens WHERE token_sha256 = ? AND revoked_at IS NULL",
        {util::sha256_hex(token)});
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<jobs::Viewer>{};
    return std::optional<jobs::Viewer>(
        jobs::Viewer{rows->front().text(0), rows->front().integer(1) != 0});
}

bool is_valid_owner(std::string_view owner) {
    return !owner.empty() && owner.size() <= 64 &&
           std::all_of(owner.begin(), owner.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                      c == '@' || c == '-';
           });
}

Result<CreatedToken> create_token(db::Connection& conn, const std::string& owner, bool admin) {
    if (!is_valid_owner(owner)) {
        return fail(ErrorCode::invalid_request, "owner must be " + std::string(owner_rule));
    }
    CreatedToken created;
    created.token = util::new_api_token();
    auto stmt = conn.prepare(
        "INSERT INTO tokens (token_sha256, owner, is_admin, created_at) VALUES (?, ?, ?, ?)");
    if (!stmt) return std::unexpected(stmt.error());
    const db::Value values[] = {util::sha256_hex(created.token), owner, std::int64_t{admin ? 1 : 0},
                                jobs::sql_timestamp(util::now_ms())};
    if (auto r = (*stmt)->execute(values); !r) return std::unexpected(r.error());
    created.id = (*stmt)->last_insert_id();
    return created;
}

Result<bool> revoke_token(db::Connection& conn, const std::string& id_or_token) {
    const std::string now = jobs::sql_timestamp(util::now_ms());
    const bool numeric = !id_or_token.empty() && id_or_token.size() < 20 &&
                         std::all_of(id_or_token.begin(), id_or_token.end(),
                                     [](char c) { return c >= '0' && c <= '9'; });
    auto affected =
        numeric
            ? conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                           {now, std::stoll(id_or_token)})
            : conn.execute(
                  "UPDATE tokens SET revoked_at = ? WHERE token_sha256 = ? AND revoked_at IS "
                  "NULL",
                  {now, util::sha256_hex(id_or_token)});
    if (!affected) return std::unexpected(affected.error());
    return *affected > 0;
}

Result<std::vector<TokenInfo>> list_tokens(db::Connection& conn) {
    auto rows =
        conn.query("SELECT id, owner, is_admin, created_at, revoked_at FROM tokens ORDER BY id");
    if (!rows) return std::unexpected(rows.error());
    std::vector<TokenInfo> out;
    for (const auto& row : *rows) {
        TokenInfo t;
        t.id = static_cast<std::uint64_t>(row.integer(0));
        t.owner = row.text(1);
        t.admin = row.integer(2) != 0;
        t.created_at = util::sql_datetime_to_rfc3339(row.text(3)).value_or(row.text(3));
        if (auto r = row.optional_text(4)) t.revoked_at = util::sql_datetime_to_rfc3339(*r);
        out.push_back(std::move(t));
    }
    return out;
}

}  // namespace kiln::auth
