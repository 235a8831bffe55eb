#include "core/util/crypto.hpp"

#include <openssl/evp.h>
#include <sys/random.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <optional>

namespace kiln::util {

struct Sha256::Impl {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
    if (impl_->ctx == nullptr || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) {
        std::abort();  // only on allocation failure inside OpenSSL
    }
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::string_view data) {
    EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

std::string Sha256::finish_hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(impl_->ctx, digest, &len);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xf]);
    }
    return out;
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.finish_hex();
}

std::string random_bytes(std::size_t n) {
    std::string out(n, '\0');
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out.data() + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            std::abort();
        }
        got += static_cast<std::size_t>(r);
    }
    return out;
}

namespace {
constexpr std::string_view job_id_alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
}  // namespace

bool is_job_id(std::string_view id) {
    return id.size() == 26 && id.find_first_not_of(job_id_alphabet) == std::string_view::npos;
}

std::string new_job_id() {
    static constexpr const char* alphabet = job_id_alphabet.data();
    std::string bytes = random_bytes(17);  // 130 bits used of 136
    std::string out;
    out.reserve(26);
    unsigned buffer = 0;
    int bits = 0;
    for (unsigned char c : bytes) {
        buffer = (buffer << 8) | c;
        bits += 8;
        while (bits >= 5 && out.size() < 26) {
            out.push_back(alphabet[(buffer >> (bits - 5)) & 31]);
            bits -= 5;
        }
        buffer &= (1u << bits) - 1;
    }
    return out;
}

std::string repr_digest_sha256(std::string_view sha256_hex) {
    if (sha256_hex.size() != 64) return {};
    unsigned char raw[32];
    for (std::size_t i = 0; i < 32; ++i) {
        auto [ptr, ec] =
            std::from_chars(sha256_hex.data() + 2 * i, sha256_hex.data() + 2 * i + 2, raw[i], 16);
        if (ec != std::errc() || ptr != sha256_hex.data() + 2 * i + 2) return {};
    }
    unsigned char encoded[45];  // 4 * ceil(32 / 3) + NUL
    const int n = EVP_EncodeBlock(encoded, raw, sizeof raw);
    return "sha-256=:" + std::string(reinterpret_cast<const char*>(encoded), n) + ":";
}

std::string base64url_encode(std::string_view data) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (unsigned char c : data) {
        buffer = (buffer << 8) | c;
        bits += 8;
        while (bits >= 6) {
            out.push_back(alphabet[(buffer >> (bits - 6)) & 63]);
            bits -= 6;
        }
        buffer &= (1u << bits) - 1;
    }
    if (bits > 0) out.push_back(alphabet[(buffer << (6 - bits)) & 63]);
    return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (char c : text) {
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            return std::nullopt;
        buffer = (buffer << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            out.push_back(static_cast<char>((buffer >> (bits - 8)) & 0xff));
            bits -= 8;
        }
        buffer &= (1u << bits) - 1;
    }
    return out;
}

std::string new_api_token() { return "kiln_" + base64url_encode(random_bytes(32)); }

}  // namespace kiln::util
