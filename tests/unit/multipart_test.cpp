#include <gtest/gtest.h>

#include <cstddef>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/multipart.hpp"
#include "core/result.hpp"

namespace kiln::http {
namespace {

constexpr std::string_view boundary = "XyZ-b0und";

struct RecordedPart {
    std::string name;
    std::optional<std::string> filename;
    std::string content_type;
    std::string data;
    bool ended = false;

    bool operator==(const RecordedPart&) const = default;
};

std::ostream& operator<<(std::ostream& os, const RecordedPart& part) {
    return os << "{name=" << part.name << " filename=" << part.filename.value_or("<none>")
              << " content_type=" << part.content_type
              << " data=" << testing::PrintToString(part.data) << " ended=" << part.ended << "}";
}

// Records every callback and checks the begin/data/end protocol; can be told to fail a callback.
class RecordingHandler final : public MultipartHandler {
  public:
    std::vector<RecordedPart> parts;
    std::size_t data_calls = 0;
    std::optional<Error> fail_begin;
    std::optional<Error> fail_data;
    std::optional<Error> fail_end;

    Result<> on_part_begin(const PartHeaders& headers) override {
        EXPECT_TRUE(parts.empty() || parts.back().ended) << "part begun before the last ended";
        if (fail_begin) return std::unexpected(*fail_begin);
        parts.push_back(RecordedPart{.name = headers.name,
                                     .filename = headers.filename,
                                     .content_type = headers.content_type,
                                     .data = {},
                                     .ended = false});
        return {};
    }

    Result<> on_part_data(std::string_view data) override {
        EXPECT_TRUE(!parts.empty() && !parts.back().ended) << "data outside a part";
        EXPECT_FALSE(data.empty()) << "empty data call";
        if (fail_data) return std::unexpected(*fail_data);
        ++data_calls;
        if (!parts.empty()) parts.back().data.append(data);
        return {};
    }

    Result<> on_part_end() override {
        EXPECT_TRUE(!parts.empty() && !parts.back().ended) << "end outside a part";
        if (fail_end) return std::unexpected(*fail_end);
        if (!parts.empty()) parts.back().ended = true;
        return {};
    }
};

struct Outcome {
    Result<> result;
    std::vector<RecordedPart> parts;
    std::size_t data_calls = 0;
};

// Feeds the chunks in order, stops at the first error, and calls finish() when all went in.
Outcome parse_chunks(const std::vector<std::string_view>& chunks, MultipartLimits limits = {},
                     std::string_view with_boundary = boundary) {
    RecordingHandler handler;
    MultipartParser parser(std::string(with_boundary), limits, handler);
    Result<> result;
    for (std::string_view chunk : chunks) {
        result = parser.feed(chunk);
        if (!result) break;
    }
    if (result) result = parser.finish();
    return Outcome{.result = result, .parts = handler.parts, .data_calls = handler.data_calls};
}

Outcome parse(std::string_view body, MultipartLimits limits = {}) {
    return parse_chunks({body}, limits);
}

Outcome parse_byte_by_byte(std::string_view body, MultipartLimits limits = {}) {
    std::vector<std::string_view> chunks;
    for (std::size_t i = 0; i < body.size(); ++i) chunks.push_back(body.substr(i, 1));
    return parse_chunks(chunks, limits);
}

// Bodies are written with "\n" for readability; every "\n" becomes CRLF.
std::string crlf(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '\n') out.push_back('\r');
        out.push_back(c);
    }
    return out;
}

std::string field(std::string_view name, std::string_view value) {
    return "--" + std::string(boundary) + "\r\nContent-Disposition: form-data; name=\"" +
           std::string(name) + "\"\r\n\r\n" + std::string(value) + "\r\n";
}

std::string closing() { return "--" + std::string(boundary) + "--\r\n"; }

std::string body_with_part_header(std::string_view header_lines) {
    return "--" + std::string(boundary) + "\r\n" + std::string(header_lines) + "\r\nx\r\n" +
           closing();
}

RecordedPart part(std::string name, std::string data, std::optional<std::string> filename = {},
                  std::string content_type = {}) {
    return RecordedPart{.name = std::move(name),
                        .filename = std::move(filename),
                        .content_type = std::move(content_type),
                        .data = std::move(data),
                        .ended = true};
}

void expect_error(const Outcome& outcome, ErrorCode code) {
    ASSERT_FALSE(outcome.result.has_value()) << "expected " << to_string(code);
    EXPECT_EQ(outcome.result.error().code, code) << outcome.result.error().message;
}

// A body that exercises every delimiter edge case; used for the chunk-split tests.
std::string tricky_body() {
    const std::string b(boundary);
    return "preamble --" + b + " text\r\n--XyZ\r\n--" + b +
           " \t\r\n"  // transport padding
           "Content-Disposition: form-data; name=\"title\"\r\n\r\n"
           "Hello, world\r\n--" +
           b +
           "\r\n"
           "content-disposition: form-data; name=\"upload\"; filename=\"a \\\"b\\\".bin\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n"
           "\r\r\n\r\n-\r\n--\r\n--XyZ\r\n--XyZ-b0un\r--" +
           b + "X --" + b + "\r\n\r\r\n--" + b +
           "\r\n"
           "Content-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--" +
           b +
           "\r\n"
           "Content-Disposition: form-data; name=\"ends-in-cr\"\r\n\r\n"
           "abc\r\r\n--" +
           b + "--\r\nepilogue\r\n--" + b + "\r\nignored";
}

std::vector<RecordedPart> tricky_parts() {
    const std::string b(boundary);
    return {
        part("title", "Hello, world"),
        part("upload", "\r\r\n\r\n-\r\n--\r\n--XyZ\r\n--XyZ-b0un\r--" + b + "X --" + b + "\r\n\r",
             "a \"b\".bin", "application/octet-stream"),
        part("empty", ""),
        part("ends-in-cr", "abc\r"),
    };
}

TEST(MultipartParser, ParsesTextFieldsAndAFilePart) {
    const char png_bytes[] = "\x89PNG\r\n\x1a\n\0\0binary";
    const std::string png(png_bytes, sizeof png_bytes - 1);
    const std::string body =
        field("title", "Holiday") + field("count", "3") + "--" + std::string(boundary) +
        crlf(
            "\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\n"
            "Content-Type: image/png\n\n") +
        png + "\r\n" + closing();

    const Outcome outcome = parse(body);

    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts,
              (std::vector<RecordedPart>{part("title", "Holiday"), part("count", "3"),
                                         part("file", png, "photo.png", "image/png")}));
}

TEST(MultipartParser, CountsPartsSeen) {
    RecordingHandler handler;
    MultipartParser parser(std::string(boundary), {}, handler);
    ASSERT_TRUE(parser.feed(field("a", "1") + field("b", "2") + closing()).has_value());
    EXPECT_EQ(parser.parts_seen(), 2u);
}

TEST(MultipartParser, TrickyBodyInOneChunkGivesExpectedParts) {
    const Outcome outcome = parse(tricky_body());
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts, tricky_parts());
}

TEST(MultipartParser, WholeBodyInOneChunkDeliversEachPartInOneDataCall) {
    const Outcome outcome = parse(tricky_body());
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.data_calls, 3u);  // "empty" has no data and gets no call
}

TEST(MultipartParser, EverySplitIntoTwoChunksGivesTheSameParts) {
    const std::string body = tricky_body();
    for (std::size_t split = 0; split <= body.size(); ++split) {
        const std::string_view view = body;
        const Outcome outcome = parse_chunks({view.substr(0, split), view.substr(split)});
        ASSERT_TRUE(outcome.result.has_value())
            << "split " << split << ": " << outcome.result.error().message;
        ASSERT_EQ(outcome.parts, tricky_parts()) << "split " << split;
    }
}

TEST(MultipartParser, EverySplitIntoThreeChunksGivesTheSameParts) {
    const std::string body = field("a", "x\r\n--XyZ-b0u\ry") + "--" + std::string(boundary) +
                             crlf("\nContent-Disposition: form-data; name=\"b\"\n\n") + "\r\r\n" +
                             closing();
    const std::vector<RecordedPart> expected = {part("a", "x\r\n--XyZ-b0u\ry"), part("b", "\r")};
    const std::string_view view = body;
    for (std::size_t first = 0; first <= body.size(); ++first) {
        for (std::size_t second = first; second <= body.size(); ++second) {
            const Outcome outcome = parse_chunks(
                {view.substr(0, first), view.substr(first, second - first), view.substr(second)});
            ASSERT_TRUE(outcome.result.has_value()) << first << "/" << second;
            ASSERT_EQ(outcome.parts, expected) << first << "/" << second;
        }
    }
}

TEST(MultipartParser, ByteByByteFeedingGivesTheSameParts) {
    const Outcome outcome = parse_byte_by_byte(tricky_body());
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts, tricky_parts());
}

TEST(MultipartParser, DataIsHandedOnBeforeThePartEndsHoldingBackOnlyAPossibleDelimiter) {
    RecordingHandler handler;
    MultipartParser parser(std::string(boundary), {}, handler);
    const std::string head =
        "--" + std::string(boundary) + crlf("\nContent-Disposition: form-data; name=\"f\"\n\n");

    ASSERT_TRUE(parser.feed(head + "hello wor").has_value());
    ASSERT_EQ(handler.parts.size(), 1u);
    EXPECT_EQ(handler.parts[0].data, "hello wor");

    ASSERT_TRUE(parser.feed("ld\r\n--XyZ").has_value());
    EXPECT_EQ(handler.parts[0].data, "hello world");

    // The held-back "\r\n--XyZ" was not a delimiter after all.
    ASSERT_TRUE(parser.feed("!").has_value());
    EXPECT_EQ(handler.parts[0].data, "hello world\r\n--XyZ!");
    EXPECT_FALSE(handler.parts[0].ended);

    ASSERT_TRUE(parser.feed("\r\n--" + std::string(boundary) + "--").has_value());
    EXPECT_EQ(handler.parts[0].data, "hello world\r\n--XyZ!");
    EXPECT_TRUE(handler.parts[0].ended);
    EXPECT_TRUE(parser.finish().has_value());
}

TEST(MultipartParser, DataEndingInCarriageReturnKeepsIt) {
    const Outcome outcome = parse(field("f", "line\r") + closing());
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("f", "line\r")});
}

TEST(MultipartParser, CrlfDashDashNotFollowedByTheBoundaryIsData) {
    const std::string data = "a\r\n--\r\n--other\r\n--XyZ-b0un\r\n--";
    const Outcome outcome = parse(field("f", data) + closing());
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("f", data)});
    EXPECT_EQ(parse_byte_by_byte(field("f", data) + closing()).parts, outcome.parts);
}

TEST(MultipartParser, BoundaryTextNotPrecededByCrlfIsData) {
    const std::string data = "--XyZ-b0und\n--XyZ-b0undX\r--XyZ-b0und--";
    const Outcome outcome = parse(field("f", data) + closing());
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("f", data)});
}

TEST(MultipartParser, DelimiterFollowedByOtherBytesIsRejected) {
    // RFC 2046 forbids the delimiter inside a part: the body is malformed, not ambiguous data.
    expect_error(parse(field("f", "a\r\n--XyZ-b0undX") + closing()), ErrorCode::invalid_request);
    expect_error(parse(field("f", "a\r\n--XyZ-b0und-X") + closing()), ErrorCode::invalid_request);
    expect_error(parse(field("f", "a\r\n--XyZ-b0und --") + closing()),
                 ErrorCode::invalid_request);  // "--" closes only right after the boundary
    expect_error(parse(field("f", "a\r\n--XyZ-b0und \tX") + closing()), ErrorCode::invalid_request);
}

TEST(MultipartParser, DelimiterLineEndingInBareLfIsRejected) {
    expect_error(parse("--" + std::string(boundary) +
                       "\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n" + closing()),
                 ErrorCode::invalid_request);
    expect_error(parse("--" + std::string(boundary) +
                       "\rContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n" + closing()),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, TransportPaddingAfterDelimiterIsAllowed) {
    const std::string body = "--" + std::string(boundary) + " \t \r\n" +
                             "Content-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--" +
                             std::string(boundary) + "--  \r\n";
    const Outcome outcome = parse(body);
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("a", "1")});
}

TEST(MultipartParser, PreambleAndEpilogueAreIgnored) {
    const std::string body = "This is a preamble.\r\nIt has --XyZ-b0und in it.\r\n" +
                             field("a", "1") + closing() + "epilogue\r\n" + field("b", "2");
    const Outcome outcome = parse(body);
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("a", "1")});
}

TEST(MultipartParser, PreambleEndingInCrlfBeforeFirstDelimiterIsAccepted) {
    const Outcome outcome = parse("\r\n" + field("a", "1") + closing());
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("a", "1")});
}

TEST(MultipartParser, OverlongPreambleIsRejected) {
    const std::string body = std::string(70 * 1024, 'p') + "\r\n" + field("a", "1") + closing();
    expect_error(parse(body), ErrorCode::invalid_request);
}

TEST(MultipartParser, ClosingDelimiterAloneIsAnEmptyForm) {
    const Outcome outcome = parse(closing());
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_TRUE(outcome.parts.empty());
}

TEST(MultipartParser, EmptyPartGetsBeginAndEndButNoData) {
    const Outcome outcome = parse(field("a", "") + closing());
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_EQ(outcome.parts, std::vector<RecordedPart>{part("a", "")});
    EXPECT_EQ(outcome.data_calls, 0u);
}

TEST(MultipartParser, MissingClosingDelimiterFailsFinish) {
    expect_error(parse(""), ErrorCode::invalid_request);
    expect_error(parse("preamble only"), ErrorCode::invalid_request);
    expect_error(parse(field("a", "1")), ErrorCode::invalid_request);
    expect_error(parse(field("a", "1") + "--" + std::string(boundary)), ErrorCode::invalid_request);
    expect_error(parse(field("a", "1") + "--" + std::string(boundary) + "-"),
                 ErrorCode::invalid_request);
    expect_error(parse("--" + std::string(boundary) + "\r\nContent-Disposition: form-da"),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, MissingClosingDelimiterLeavesLastPartUnended) {
    const Outcome outcome = parse(field("a", "1") + field("b", "partial"));
    expect_error(outcome, ErrorCode::invalid_request);
    ASSERT_EQ(outcome.parts.size(), 2u);
    EXPECT_TRUE(outcome.parts[0].ended);
    EXPECT_FALSE(outcome.parts[1].ended);
}

TEST(MultipartParser, HeaderBlockLargerThanLimitIsPayloadTooLarge) {
    const std::string huge = "X-Padding: " + std::string(10000, 'a');
    const std::string body =
        body_with_part_header("Content-Disposition: form-data; name=\"a\"\r\n" + huge + "\r\n");
    expect_error(parse(body), ErrorCode::payload_too_large);
    expect_error(parse_byte_by_byte(body), ErrorCode::payload_too_large);
}

TEST(MultipartParser, HeaderLineWithoutEndIsCutOffAtTheLimit) {
    // Fed in small chunks, the line never completes: the limit still applies.
    const std::string body =
        "--" + std::string(boundary) + "\r\nX-Endless: " + std::string(100000, 'a');
    RecordingHandler handler;
    MultipartParser parser(std::string(boundary), {}, handler);
    Result<> result;
    for (std::size_t i = 0; i < body.size() && result; i += 100) {
        result = parser.feed(std::string_view(body).substr(i, 100));
    }
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, ErrorCode::payload_too_large);
}

TEST(MultipartParser, HeaderBlockOfExactlyTheLimitIsAccepted) {
    const std::string disposition = "Content-Disposition: form-data; name=\"a\"\r\n";
    // The block counts every byte of its lines and the blank line that ends it.
    const std::string filler_head = "X-F: ";
    const std::size_t limit = 200;
    const std::size_t filler =
        limit - disposition.size() - filler_head.size() - 2 /* its CRLF */ - 2 /* blank */;
    const std::string lines = disposition + filler_head + std::string(filler, 'f') + "\r\n";

    const Outcome at_limit =
        parse(body_with_part_header(lines), MultipartLimits{.max_part_header_bytes = limit});
    EXPECT_TRUE(at_limit.result.has_value());
    expect_error(
        parse(body_with_part_header(lines), MultipartLimits{.max_part_header_bytes = limit - 1}),
        ErrorCode::payload_too_large);
}

TEST(MultipartParser, MoreHeaderLinesThanLimitIsRejected) {
    std::string lines = "Content-Disposition: form-data; name=\"a\"\r\n";
    for (int i = 0; i < 3; ++i) lines += "X-Extra: " + std::to_string(i) + "\r\n";
    const MultipartLimits four{.max_headers_per_part = 4};
    const MultipartLimits three{.max_headers_per_part = 3};
    EXPECT_TRUE(parse(body_with_part_header(lines), four).result.has_value());
    expect_error(parse(body_with_part_header(lines), three), ErrorCode::invalid_request);
}

TEST(MultipartParser, ObsoleteLineFoldingIsRejected) {
    expect_error(parse(body_with_part_header("Content-Disposition: form-data;\r\n name=\"a\"\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, BareLfInPartHeadersIsRejected) {
    expect_error(parse(body_with_part_header("Content-Disposition: form-data; name=\"a\"\n")),
                 ErrorCode::invalid_request);
    expect_error(parse("--" + std::string(boundary) +
                       "\r\nContent-Disposition: form-data; name=\"a\"\r\n\n\r\nx\r\n" + closing()),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, BareCrInPartHeaderIsRejected) {
    expect_error(parse(body_with_part_header(
                     "Content-Disposition: form-data; name=\"a\"\rX-Injected: 1\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, HeaderLineWithoutColonIsRejected) {
    expect_error(parse(body_with_part_header(
                     "Content-Disposition: form-data; name=\"a\"\r\nno colon here\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, WhitespaceBeforeHeaderColonIsRejected) {
    expect_error(parse(body_with_part_header("Content-Disposition : form-data; name=\"a\"\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, MorePartsThanLimitIsPayloadTooLarge) {
    const MultipartLimits two{.max_parts = 2};
    EXPECT_TRUE(parse(field("a", "1") + field("b", "2") + closing(), two).result.has_value());
    const Outcome outcome =
        parse(field("a", "1") + field("b", "2") + field("c", "3") + closing(), two);
    expect_error(outcome, ErrorCode::payload_too_large);
    EXPECT_EQ(outcome.parts.size(), 2u);
}

TEST(MultipartParser, PartWithoutContentDispositionIsRejected) {
    expect_error(parse(body_with_part_header("Content-Type: text/plain\r\n")),
                 ErrorCode::invalid_request);
    expect_error(parse(body_with_part_header("")), ErrorCode::invalid_request);
}

TEST(MultipartParser, PartWithoutNameIsRejected) {
    expect_error(parse(body_with_part_header("Content-Disposition: form-data\r\n")),
                 ErrorCode::invalid_request);
    expect_error(
        parse(body_with_part_header("Content-Disposition: form-data; filename=\"a.txt\"\r\n")),
        ErrorCode::invalid_request);
    expect_error(parse(body_with_part_header("Content-Disposition: form-data; name=\"\"\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, DispositionOtherThanFormDataIsRejected) {
    expect_error(parse(body_with_part_header("Content-Disposition: attachment; name=\"a\"\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, DuplicateNamesForOnePartAreRejected) {
    expect_error(
        parse(body_with_part_header("Content-Disposition: form-data; name=\"a\"; NAME=\"b\"\r\n")),
        ErrorCode::invalid_request);
    expect_error(parse(body_with_part_header("Content-Disposition: form-data; name=\"a\"\r\n"
                                             "Content-Disposition: form-data; name=\"b\"\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, MalformedDispositionParametersAreRejected) {
    for (const char* disposition : {
             "form-data; name=\"unterminated\r\n",
             "form-data; name\r\n",
             "form-data; name=\r\n",
             "form-data; name=\"a\" junk\r\n",
             "form-data name=\"a\"\r\n",
         }) {
        expect_error(
            parse(body_with_part_header(std::string("Content-Disposition: ") + disposition)),
            ErrorCode::invalid_request);
    }
}

TEST(MultipartParser, HeaderAndParameterNamesAreCaseInsensitiveAndTokensNeedNoQuotes) {
    const Outcome outcome = parse(body_with_part_header(
        "CONTENT-DISPOSITION: Form-Data ; Name=field_1;FileName=report.pdf ;\r\n"
        "content-type: Application/PDF\r\n"
        "X-Ignored: yes\r\n"));
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts,
              std::vector<RecordedPart>{part("field_1", "x", "report.pdf", "Application/PDF")});
}

TEST(MultipartParser, QuotedFilenameWithEscapedQuoteAndPathComponentsIsKeptRaw) {
    const Outcome outcome =
        parse(body_with_part_header("Content-Disposition: form-data; name=\"f\"; "
                                    "filename=\"../../etc/a \\\"quoted\\\" name;x=y.txt\"\r\n"));
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    ASSERT_EQ(outcome.parts.size(), 1u);
    EXPECT_EQ(outcome.parts[0].filename, "../../etc/a \"quoted\" name;x=y.txt");
}

TEST(MultipartParser, BackslashesNotEscapingAQuoteOrBackslashAreKept) {
    // Old browsers send full Windows paths without escaping the backslashes.
    const Outcome windows = parse(body_with_part_header(
        "Content-Disposition: form-data; name=\"f\"; filename=\"C:\\Users\\me\\a.txt\"\r\n"));
    ASSERT_TRUE(windows.result.has_value()) << windows.result.error().message;
    EXPECT_EQ(windows.parts.at(0).filename, "C:\\Users\\me\\a.txt");

    const Outcome escaped = parse(body_with_part_header(
        "Content-Disposition: form-data; name=\"f\"; filename=\"a\\\\b\"\r\n"));
    ASSERT_TRUE(escaped.result.has_value()) << escaped.result.error().message;
    EXPECT_EQ(escaped.parts.at(0).filename, "a\\b");
}

TEST(MultipartParser, NonAsciiFilenameBytesArePassedThrough) {
    const Outcome outcome = parse(body_with_part_header(
        "Content-Disposition: form-data; name=\"f\"; filename=\"r\xc3\xa9sum\xc3\xa9.txt\"\r\n"));
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts.at(0).filename, "r\xc3\xa9sum\xc3\xa9.txt");
}

TEST(MultipartParser, EmptyFilenameMeansAFilePartWithoutName) {
    const Outcome outcome = parse(
        body_with_part_header("Content-Disposition: form-data; name=\"f\"; filename=\"\"\r\n"));
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_EQ(outcome.parts.at(0).filename, std::optional<std::string>(""));
}

TEST(MultipartParser, FieldWithoutFilenameHasNoFilename) {
    const Outcome outcome = parse(field("a", "1") + closing());
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_FALSE(outcome.parts.at(0).filename.has_value());
}

TEST(MultipartParser, Rfc5987FilenameIsDecodedAndPreferred) {
    const Outcome outcome = parse(body_with_part_header(
        "Content-Disposition: form-data; name=\"f\"; filename*=UTF-8''%e2%82%AC%20rates.txt; "
        "filename=\"EUR rates.txt\"\r\n"));
    ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().message;
    EXPECT_EQ(outcome.parts.at(0).filename, "\xe2\x82\xac rates.txt");

    const Outcome other_charset = parse(body_with_part_header(
        "Content-Disposition: form-data; name=\"f\"; filename*=ISO-8859-1'en'%A3.txt; "
        "filename=\"pound.txt\"\r\n"));
    ASSERT_TRUE(other_charset.result.has_value());
    EXPECT_EQ(other_charset.parts.at(0).filename, "pound.txt");

    expect_error(parse(body_with_part_header(
                     "Content-Disposition: form-data; name=\"f\"; filename*=UTF-8''%zz\r\n")),
                 ErrorCode::invalid_request);
    expect_error(parse(body_with_part_header(
                     "Content-Disposition: form-data; name=\"f\"; filename*=no-quotes\r\n")),
                 ErrorCode::invalid_request);
}

TEST(MultipartParser, ContentTypeIsKeptAsDeclared) {
    const Outcome outcome =
        parse(body_with_part_header("Content-Type:   text/plain; charset=\"utf-8\"  \r\n"
                                    "Content-Disposition: form-data; name=\"a\"\r\n"));
    ASSERT_TRUE(outcome.result.has_value());
    EXPECT_EQ(outcome.parts.at(0).content_type, "text/plain; charset=\"utf-8\"");
}

TEST(MultipartParser, ErrorIsReturnedByEveryLaterCall) {
    RecordingHandler handler;
    MultipartParser parser(std::string(boundary), {}, handler);
    const Result<> first = parser.feed(body_with_part_header("no colon\r\n"));
    ASSERT_FALSE(first.has_value());

    const Result<> again = parser.feed(field("a", "1") + closing());
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, first.error().code);
    EXPECT_EQ(again.error().message, first.error().message);

    const Result<> finished = parser.finish();
    ASSERT_FALSE(finished.has_value());
    EXPECT_EQ(finished.error().message, first.error().message);
    EXPECT_TRUE(handler.parts.empty());
}

TEST(MultipartParser, FinishErrorIsReturnedByLaterCalls) {
    RecordingHandler handler;
    MultipartParser parser(std::string(boundary), {}, handler);
    ASSERT_TRUE(parser.feed(field("a", "1")).has_value());
    const Result<> first = parser.finish();
    ASSERT_FALSE(first.has_value());
    const Result<> later = parser.feed(closing());
    ASSERT_FALSE(later.has_value());
    EXPECT_EQ(later.error().message, first.error().message);
}

TEST(MultipartParser, HandlerErrorsPropagateUnchanged) {
    const Error disk_full{.code = ErrorCode::insufficient_storage,
                          .message = "write(/tmp/x): No space left on device",
                          .native = "ENOSPC"};
    const std::string body = field("a", "1") + closing();
    for (int which = 0; which < 3; ++which) {
        RecordingHandler handler;
        (which == 0   ? handler.fail_begin
         : which == 1 ? handler.fail_data
                      : handler.fail_end) = disk_full;
        MultipartParser parser(std::string(boundary), {}, handler);
        const Result<> result = parser.feed(body);
        ASSERT_FALSE(result.has_value()) << which;
        EXPECT_EQ(result.error().code, disk_full.code);
        EXPECT_EQ(result.error().message, disk_full.message);
        EXPECT_EQ(result.error().native, disk_full.native);
        const Result<> later = parser.finish();
        ASSERT_FALSE(later.has_value());
        EXPECT_EQ(later.error().native, disk_full.native);
    }
}

TEST(MultipartParser, InvalidBoundaryFailsEveryCall) {
    for (const std::string& bad :
         {std::string(), std::string(71, 'b'), std::string("a\r\nb"), std::string("trailing ")}) {
        RecordingHandler handler;
        MultipartParser parser(bad, {}, handler);
        const Result<> result = parser.feed("--" + bad + "--\r\n");
        ASSERT_FALSE(result.has_value());
        EXPECT_EQ(result.error().code, ErrorCode::invalid_request);
        EXPECT_FALSE(parser.finish().has_value());
    }
}

TEST(MultipartParser, LongestBoundaryWorks) {
    const std::string b(70, 'q');
    const std::string body =
        "--" + b + "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--" + b + "--";
    RecordingHandler handler;
    MultipartParser parser(b, {}, handler);
    ASSERT_TRUE(parser.feed(body).has_value());
    ASSERT_TRUE(parser.finish().has_value());
    EXPECT_EQ(handler.parts, std::vector<RecordedPart>{part("a", "1")});
}

TEST(MultipartBoundary, TakesTokenOrQuotedBoundaryOfFormData) {
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc123"), "abc123");
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"a b:c\""), "a b:c");
    EXPECT_EQ(multipart_boundary("multipart/form-data;boundary=----WebKitFormBoundaryx7Q"),
              "----WebKitFormBoundaryx7Q");
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"q\\\"x\""), "q\"x");
}

TEST(MultipartBoundary, TypeAndParameterNamesAreCaseInsensitive) {
    EXPECT_EQ(multipart_boundary("Multipart/Form-Data; BOUNDARY=XyZ"), "XyZ");
}

TEST(MultipartBoundary, OtherParametersAreAllowed) {
    EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8; boundary=b1; x=\"y;z\""),
              "b1");
    EXPECT_EQ(multipart_boundary("multipart/form-data ; boundary=b1 ;"), "b1");
}

TEST(MultipartBoundary, OtherTypesHaveNoBoundary) {
    EXPECT_EQ(multipart_boundary("multipart/mixed; boundary=abc"), std::nullopt);
    EXPECT_EQ(multipart_boundary("application/x-www-form-urlencoded"), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-datax; boundary=abc"), std::nullopt);
    EXPECT_EQ(multipart_boundary(""), std::nullopt);
}

TEST(MultipartBoundary, MissingEmptyOrOverlongBoundaryIsRejected) {
    EXPECT_EQ(multipart_boundary("multipart/form-data"), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8"), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary="), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"\""), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')),
              std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + std::string(70, 'a')),
              std::string(70, 'a'));
}

TEST(MultipartBoundary, MalformedOrAmbiguousParametersAreRejected) {
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"unterminated"), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=a; boundary=b"), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"a\r\nb\""), std::nullopt);
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=\"ends in space \""), std::nullopt);
}

}  // namespace
}  // namespace kiln::http
