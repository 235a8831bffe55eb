#include "core/util/json_limits.hpp"

#include <gtest/gtest.h>

namespace kiln::util {
namespace {

TEST(ClientJson, ValidJsonParses) {
    auto v = parse_client_json(R"({"format":"mp4","height":720})", "params");
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ((*v)["height"], 720);
}

TEST(ClientJson, MalformedJsonIsInvalidRequestNamingTheField) {
    auto v = parse_client_json(R"({"format":)", "params");
    ASSERT_FALSE(v.has_value());
    EXPECT_EQ(v.error().code, ErrorCode::invalid_request);
    EXPECT_NE(v.error().message.find("params"), std::string::npos);
}

TEST(ClientJson, NestingDeeperThanTheLimitIsRejectedBeforeParsing) {
    std::string deep(max_json_depth + 1, '[');
    deep += std::string(max_json_depth + 1, ']');
    EXPECT_FALSE(parse_client_json(deep, "params").has_value());
    std::string ok(max_json_depth, '[');
    ok += std::string(max_json_depth, ']');
    EXPECT_TRUE(parse_client_json(ok, "params").has_value());
}

TEST(ClientJson, BracketsInsideStringsDoNotCountAsNesting) {
    EXPECT_TRUE(
        parse_client_json(R"({"a":"[[[[[[[[[[[[[[[[[[[[[[[[\"[[["})", "params").has_value());
}

TEST(ClientJson, AMemberGivenTwiceInOneObjectIsRejectedNamingIt) {
    auto v = parse_client_json(R"({"height":240,"format":"mp4","height":300})", "params");
    ASSERT_FALSE(v.has_value());
    EXPECT_EQ(v.error().code, ErrorCode::invalid_request);
    EXPECT_NE(v.error().message.find("'height' twice"), std::string::npos) << v.error().message;
    // The same key in different objects, nested or side by side, is fine.
    EXPECT_TRUE(parse_client_json(R"({"a":{"a":1},"b":[{"a":1},{"a":2}]})", "params"));
    EXPECT_FALSE(parse_client_json(R"({"a":{"b":1,"b":2}})", "params"));
}

TEST(ClientJson, ANulByteAnywhereIsRejectedNotTruncated) {
    using namespace std::string_literals;
    EXPECT_FALSE(parse_client_json("{\"a\":1}\0{\"b\":2}"s, "params").has_value());
    EXPECT_FALSE(parse_client_json("7\0garbage"s, "params").has_value());
}

TEST(ClientJson, AnEscapedNulInAStringOrAKeyIsRejectedNamingIt) {
    for (const char* text : {R"({"type":"video.thumbnail\u0000"})", R"({"a\u0000b":1})",
                             R"({"p":["x","\u0000"]})", R"("\u0000")"}) {
        SCOPED_TRACE(text);
        auto parsed = parse_client_json(text, "the body");
        ASSERT_FALSE(parsed.has_value());
        EXPECT_EQ(parsed.error().code, ErrorCode::invalid_request);
        EXPECT_NE(parsed.error().message.find("NUL"), std::string::npos);
    }
    // Other escapes still pass, control characters included.
    EXPECT_TRUE(parse_client_json(R"({"a":"\u0001\n\u00e9"})", "the body"));
}

}  // namespace
}  // namespace kiln::util
