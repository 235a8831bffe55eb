#include "core/converters/command.hpp"

#include <gtest/gtest.h>

#include "core/converters/progress.hpp"
#include "core/jobs/repository.hpp"

namespace kiln::converters {
namespace {

ExpansionContext context(nlohmann::json params) {
    ExpansionContext ctx;
    ctx.params = std::move(params);
    ctx.input = "/srv/kiln/sources/job/in put.mp4";
    ctx.workdir = "/srv/kiln/tmp/work";
    ctx.outputs = {"video.webm", "poster.jpg"};
    return ctx;
}

TEST(ArgumentTemplate, EachPlaceholderBecomesExactlyOneArgument) {
    auto argv =
        expand_args({"-i", "{input}", "-crf", "{crf}", "{output:video}"}, context({{"crf", 30}}));
    ASSERT_TRUE(argv.has_value()) << argv.error().message;
    EXPECT_EQ(*argv, (std::vector<std::string>{"-i", "/srv/kiln/sources/job/in put.mp4", "-crf",
                                               "30", "/srv/kiln/tmp/work/video.webm"}));
}

TEST(ArgumentTemplate, ConditionalArgumentsAppearOnlyWhenTheirParamIsSetOrMatches) {
    const std::vector<std::string> tmpl = {"{?height}-vf", "{?height}scale=-2:{height}",
                                           "{?format=mp4}-movflags", "{?format=mp4}+faststart"};
    auto with = expand_args(tmpl, context({{"height", 480}, {"format", "mp4"}}));
    ASSERT_TRUE(with.has_value());
    EXPECT_EQ(*with, (std::vector<std::string>{"-vf", "scale=-2:480", "-movflags", "+faststart"}));
    auto without = expand_args(tmpl, context({{"format", "webm"}}));
    ASSERT_TRUE(without.has_value());
    EXPECT_TRUE(without->empty());
}

TEST(ArgumentTemplate, NegatedConditionalArgumentsAppearOnlyWhenTheirParamIsUnset) {
    const std::vector<std::string> tmpl = {"-vf", "{?height}scale=-2:{height}",
                                           "{!height}scale=trunc(iw/2)*2:trunc(ih/2)*2"};
    auto with = expand_args(tmpl, context({{"height", 480}}));
    ASSERT_TRUE(with.has_value());
    EXPECT_EQ(*with, (std::vector<std::string>{"-vf", "scale=-2:480"}));
    auto without = expand_args(tmpl, context({}));
    ASSERT_TRUE(without.has_value());
    EXPECT_EQ(*without, (std::vector<std::string>{"-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"}));
    EXPECT_FALSE(expand_args({"{!height"}, context({})).has_value());
    // No "not equal" form: {!NAME=VALUE} would otherwise always appear.
    auto not_equal = expand_args({"{!format=mp4}-x"}, context({{"format", "mp4"}}));
    ASSERT_FALSE(not_equal.has_value());
    EXPECT_EQ(not_equal.error().code, ErrorCode::config);
}

TEST(ArgumentTemplate, SeekIsCappedAtHalfTheDuration) {
    auto ctx = context({});
    ctx.duration = 1.0;
    EXPECT_EQ(expand_args({"{seek:2}"}, ctx)->front(), "0.500");
    ctx.duration = 10.0;
    EXPECT_EQ(expand_args({"{seek:2}"}, ctx)->front(), "2.000");
    EXPECT_TRUE(needs_duration({"-ss", "{seek:2}"}));
    EXPECT_FALSE(needs_duration({"-i", "{input}"}));
}

TEST(ArgumentTemplate, AnUnknownPlaceholderIsADefinitionError) {
    auto argv = expand_args({"{nope}"}, context({}));
    ASSERT_FALSE(argv.has_value());
    EXPECT_EQ(argv.error().code, ErrorCode::config);
    EXPECT_FALSE(expand_args({"{output:missing}"}, context({})).has_value());
    EXPECT_FALSE(expand_args({"{unterminated"}, context({})).has_value());
}

TEST(OutputName, ParamsExpandButMustStayAPlainFileName) {
    EXPECT_EQ(*expand_output_name("video.{format}", {{"format", "webm"}}), "video.webm");
    EXPECT_FALSE(expand_output_name("{format}", {{"format", "../x"}}).has_value());
    EXPECT_FALSE(expand_output_name("{format}", {{"format", ".hidden"}}).has_value());
}

TEST(ProgressLines, PercentAndOptionalStepAreRead) {
    auto p = parse_progress_line("[PROGRESS] 42 encoding audio");
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->percent, 42);
    EXPECT_EQ(p->step, "encoding audio");
    EXPECT_EQ(parse_progress_line("[PROGRESS] 250")->percent, 100);
    EXPECT_FALSE(parse_progress_line("progress 42").has_value());
    EXPECT_FALSE(parse_progress_line("[PROGRESS] lots").has_value());
}

TEST(FfmpegProgress, OutTimeAgainstDurationStaysBelowHundredUntilTheEnd) {
    EXPECT_EQ(parse_ffmpeg_progress("out_time_us=2500000", 10.0), 25);
    EXPECT_EQ(parse_ffmpeg_progress("out_time_ms=20000000", 10.0), 99);
    EXPECT_EQ(parse_ffmpeg_progress("progress=end", 10.0), 100);
    EXPECT_FALSE(parse_ffmpeg_progress("frame=12", 10.0).has_value());
    EXPECT_FALSE(parse_ffmpeg_progress("out_time_us=100", 0.0).has_value());
}

TEST(Cursor, RoundTripsAndRejectsAnythingElse) {
    EXPECT_EQ(jobs::decode_cursor(jobs::encode_cursor(12345)), 12345u);
    EXPECT_FALSE(jobs::decode_cursor("garbage!").has_value());
    EXPECT_FALSE(jobs::decode_cursor("").has_value());
    EXPECT_FALSE(jobs::decode_cursor(std::string(100, 'A')).has_value());
}

}  // namespace
}  // namespace kiln::converters
