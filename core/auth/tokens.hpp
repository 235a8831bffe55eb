#pragma once
// API tokens: random bearer secrets of which only the SHA-256 is stored. A token belongs to an
// owner; an admin token sees every owner's jobs. Revocation takes effect on the next request
// (tokens are looked up on every request, by the unique hash index).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/db/mariadb.hpp"
#include "core/jobs/repository.hpp"
#include "core/result.hpp"

namespace kiln::auth {

// The token from an "Authorization: Bearer <token>" header value, or nullopt.
std::optional<std::string> bearer_token(std::string_view authorization);

// The viewer for a live token, nullopt for an unknown or revoked one.
Result<std::optional<jobs::Viewer>> authenticate(db::Connection& conn, const std::string& token);

struct CreatedToken {
    std::uint64_t id = 0;
    std::string token;  // shown once; only its hash is stored
};

// Owner names: 1..64 characters of [A-Za-z0-9._@-].
bool is_valid_owner(std::string_view owner);
inline constexpr std::string_view owner_rule = "1..64 characters of [A-Za-z0-9._@-]";

// Fails with invalid_request for an owner name outside is_valid_owner.
Result<CreatedToken> create_token(db::Connection& conn, const std::string& owner, bool admin);

// Revokes by numeric id or by the token itself; false when nothing live matched.
Result<bool> revoke_token(db::Connection& conn, const std::string& id_or_token);

struct TokenInfo {
    std::uint64_t id = 0;
    std::string owner;
    bool admin = false;
    std::string created_at;
    std::optional<std::string> revoked_at;
};
Result<std::vector<TokenInfo>> list_tokens(db::Connection& conn);

}  // namespace kiln::auth
