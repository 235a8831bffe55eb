#include "core/http/response.hpp"

#include <gtest/gtest.h>

namespace kiln::http {
namespace {

std::string header(const Response& r, const std::string& name) {
    for (const auto& [n, v] : r.headers) {
        if (n == name) return v;
    }
    return "";
}

TEST(ProblemResponse, EveryClientErrorMapsToItsStatusAndStableCode) {
    const std::vector<std::tuple<ErrorCode, int, std::string>> cases = {
        {ErrorCode::invalid_request, 400, "invalid_request"},
        {ErrorCode::unauthorized, 401, "unauthorized"},
        {ErrorCode::not_found, 404, "not_found"},
        {ErrorCode::method_not_allowed, 405, "method_not_allowed"},
        {ErrorCode::conflict, 409, "conflict"},
        {ErrorCode::length_required, 411, "length_required"},
        {ErrorCode::payload_too_large, 413, "payload_too_large"},
        {ErrorCode::unsupported_media_type, 415, "unsupported_media_type"},
        {ErrorCode::unknown_type, 422, "unknown_type"},
        {ErrorCode::idempotency_mismatch, 422, "idempotency_mismatch"},
        {ErrorCode::unavailable, 503, "unavailable"},
        {ErrorCode::insufficient_storage, 507, "insufficient_storage"},
    };
    for (const auto& [code, status, name] : cases) {
        Response r = problem(Error{code, "what happened", ""});
        auto body = nlohmann::json::parse(r.body);
        EXPECT_EQ(r.status, status) << name;
        EXPECT_EQ(header(r, "Content-Type"), "application/problem+json");
        EXPECT_EQ(body["code"], name);
        EXPECT_EQ(body["status"], status);
        EXPECT_EQ(body["type"], "about:blank");
        EXPECT_FALSE(body["title"].get<std::string>().empty());
    }
}

TEST(ProblemResponse, InternalFailuresAreRetryable503sThatHideTheirDetail) {
    for (auto code :
         {ErrorCode::internal, ErrorCode::io, ErrorCode::config, ErrorCode::unavailable}) {
        Response r = problem(Error{code, "mysql_real_connect: /run/secret.sock", "2002/HY000"});
        auto body = nlohmann::json::parse(r.body);
        EXPECT_EQ(r.status, 503);
        EXPECT_EQ(body["code"], "unavailable");
        EXPECT_EQ(header(r, "Retry-After"), "1");
        EXPECT_EQ(r.body.find("secret"), std::string::npos);
    }
}

TEST(ProblemResponse, UnauthorizedCarriesTheBearerChallenge) {
    Response r = problem(Error{ErrorCode::unauthorized, "no token", ""});
    EXPECT_EQ(header(r, "WWW-Authenticate"), "Bearer");
}

TEST(ProblemResponse, ExtraMembersAreMergedIn) {
    Response r = problem(Error{ErrorCode::unsupported_media_type, "no", ""},
                         {{"detected_type", "image/png"}});
    EXPECT_EQ(nlohmann::json::parse(r.body)["detected_type"], "image/png");
}

}  // namespace
}  // namespace kiln::http
