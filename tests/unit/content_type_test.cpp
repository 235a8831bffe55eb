// Reading a request's Content-Type as RFC 9110 says: the media type is case-insensitive and
// ends at the first ';', parameters may be quoted.

#include <gtest/gtest.h>

#include "core/http/multipart.hpp"

namespace kiln::http {
namespace {

TEST(ContentType, MediaTypeIsLowercasedTrimmedAndWithoutParameters) {
    EXPECT_EQ(media_type("Application/JSON; charset=utf-8"), "application/json");
    EXPECT_EQ(media_type("  multipart/form-data ;boundary=x"), "multipart/form-data");
    EXPECT_EQ(media_type("application/jsonx"), "application/jsonx");
    EXPECT_EQ(media_type(""), "");
}

TEST(ContentType, CharsetIsFoundAmongParametersLowercasedAndUnquoted) {
    EXPECT_EQ(charset_of("application/json; charset=UTF-8"), "utf-8");
    EXPECT_EQ(charset_of("application/json;foo=bar; Charset=\"utf-16\""), "utf-16");
    EXPECT_EQ(charset_of("application/json"), "");
    EXPECT_EQ(charset_of("application/json; foo=charset=x"), "");
}

}  // namespace
}  // namespace kiln::http
