// Digest encodings that clients compare against their own tools' output.

#include <gtest/gtest.h>

#include "core/util/crypto.hpp"

namespace kiln::util {
namespace {

TEST(ReprDigest, EncodesTheSha256AsRfc9530SaysWithStandardBase64) {
    // SHA-256 of the empty string; `printf '' | openssl dgst -sha256 -binary | base64`.
    EXPECT_EQ(repr_digest_sha256(sha256_hex("")),
              "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
    // "abc" (FIPS 180-2 example): its base64 has '+' and '/', which base64url would change.
    EXPECT_EQ(repr_digest_sha256(sha256_hex("abc")),
              "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:");
}

TEST(ReprDigest, IsEmptyForAnythingButSixtyFourHexDigits) {
    EXPECT_EQ(repr_digest_sha256(""), "");
    EXPECT_EQ(repr_digest_sha256(std::string(63, 'a')), "");
    EXPECT_EQ(repr_digest_sha256(std::string(62, 'a') + "zz"), "");
    EXPECT_EQ(repr_digest_sha256(std::string(62, 'a') + "+1"), "");
}

}  // namespace
}  // namespace kiln::util
