#pragma once
// Hashing and randomness from OpenSSL and the kernel: SHA-256 for stored files and token hashes,
// getrandom(2) for ids and tokens.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace kiln::util {

// Incremental SHA-256 over a stream of chunks.
class Sha256 final {
  public:
    Sha256();
    ~Sha256();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;

    void update(std::string_view data);
    // Lowercase hex digest; the object is spent afterwards.
    [[nodiscard]] std::string finish_hex();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::string_view data);

// The RFC 9530 Repr-Digest field value for a SHA-256 digest given in hex:
// "sha-256=:<base64 of the 32 bytes>:". Empty when `sha256_hex` is not 64 hex digits.
std::string repr_digest_sha256(std::string_view sha256_hex);

// `n` bytes from getrandom(2); aborts the process if the kernel cannot provide them (it only
// blocks before the entropy pool is initialised at boot).
std::string random_bytes(std::size_t n);

// 26 characters of lowercase base32 (Crockford alphabet) from 128 random bits.
std::string new_job_id();
// Whether `id` could have come from new_job_id(): anything else names no job.
bool is_job_id(std::string_view id);

// "kiln_" + 43 base64url characters (256 random bits).
std::string new_api_token();

std::string base64url_encode(std::string_view data);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace kiln::util
