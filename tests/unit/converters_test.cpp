#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/converters/definition.hpp"

namespace kiln::converters {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path shipped_dir = fs::path(KILN_SOURCE_DIR) / "converters";
const fs::path test_dir = fs::path(KILN_SOURCE_DIR) / "tests" / "converters";

constexpr const char* minimal_toml = R"(
name = "test.minimal"
description = "minimal"
accepts = ["image/png"]
max_upload_bytes = 1024
)";

// The example of docs/converters.md.
constexpr const char* documented_example = R"toml(
name = "video.transcode"
description = "Transcode a video to MP4 (H.264/AAC) or WebM (VP9/Opus)"
accepts = ["video/*"]
max_upload_bytes = 4294967296
min_files = 1            # 0 for converters that take no upload
max_files = 1
timeout_seconds = 3600
max_attempts = 3
max_output_bytes = 17179869184  # the largest file a step may write (16 GiB)

[params.format]
type = "enum"            # enum | integer | boolean
values = ["mp4", "webm"]
default = "mp4"
description = "container and codecs"

[params.height]
type = "integer"
min = 240
max = 2160

[run]
program = "ffmpeg"
args = ["-nostdin", "-i", "{input}", "{output:video}"]
outputs = ["video.{format}"]
progress = "ffmpeg"
)toml";

// A fresh directory per test, removed afterwards.
class DefinitionFiles : public ::testing::Test {
  protected:
    void SetUp() override {
        static std::atomic<int> counter{0};
        dir_ = fs::temp_directory_path() / ("kiln-converters-test-" + std::to_string(::getpid()) +
                                            "-" + std::to_string(counter++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }

    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    fs::path write(const std::string& file_name, const std::string& content) {
        const fs::path path = dir_ / file_name;
        std::ofstream(path, std::ios::binary) << content;
        return path;
    }

    Result<Definition> load_text(const std::string& content) {
        return load_definition(write("def.toml", content));
    }

    // The minimal valid definition plus `extra`.
    Result<Definition> load_minimal_with(const std::string& extra) {
        return load_text(std::string(minimal_toml) + extra);
    }

    fs::path dir_;
};

// Asserts a config error whose message names the file and contains every fragment.
#define EXPECT_CONFIG_ERROR(result, ...)                                                         \
    do {                                                                                         \
        const auto& r_ = (result);                                                               \
        ASSERT_FALSE(r_.has_value()) << "expected a config error";                               \
        EXPECT_EQ(r_.error().code, ErrorCode::config);                                           \
        EXPECT_NE(r_.error().message.find("def.toml"), std::string::npos) << r_.error().message; \
        for (const char* fragment_ : {__VA_ARGS__}) {                                            \
            EXPECT_NE(r_.error().message.find(fragment_), std::string::npos)                     \
                << "'" << fragment_ << "' not in: " << r_.error().message;                       \
        }                                                                                        \
    } while (false)

Definition shipped(const std::string& name) {
    auto defs = load_definitions({shipped_dir});
    if (!defs) throw std::runtime_error(defs.error().message);
    return defs->at(name);
}

// --- Shipped definitions -------------------------------------------------------------------

TEST(ShippedConverters, AllShippedDefinitionsLoad) {
    auto defs = load_definitions({shipped_dir});
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    for (const char* name :
         {"video.transcode", "video.thumbnail", "audio.transcode", "image.thumbnails"}) {
        ASSERT_TRUE(defs->contains(name)) << name;
        const Definition& def = defs->at(name);
        EXPECT_EQ(def.source.filename(), std::string(name) + ".toml");
        EXPECT_FALSE(def.run.steps.empty()) << name;
        EXPECT_FALSE(def.run.outputs.empty()) << name;
    }
}

TEST(ShippedConverters, VideoTranscodeHasFormatEnumAndOptionalHeight) {
    const Definition def = shipped("video.transcode");
    EXPECT_TRUE(def.accepts_mime("video/mp4"));
    EXPECT_FALSE(def.accepts_mime("audio/mpeg"));
    EXPECT_EQ(def.min_files, 1u);
    EXPECT_EQ(def.max_files, 1u);
    EXPECT_EQ(def.max_upload_bytes, 4294967296u);
    EXPECT_EQ(def.run.program, "ffmpeg");
    EXPECT_EQ(def.run.progress, "ffmpeg");
    EXPECT_EQ(def.run.outputs, std::vector<std::string>{"video.{format}"});

    const ParamSpec* format = def.param("format");
    ASSERT_NE(format, nullptr);
    EXPECT_EQ(format->kind, ParamSpec::Kind::enumeration);
    EXPECT_EQ(format->values, (std::vector<std::string>{"mp4", "webm"}));
    EXPECT_EQ(format->default_value, json("mp4"));

    const ParamSpec* height = def.param("height");
    ASSERT_NE(height, nullptr);
    EXPECT_EQ(height->kind, ParamSpec::Kind::integer);
    EXPECT_EQ(height->min, 240);
    EXPECT_EQ(height->max, 2160);
    EXPECT_FALSE(height->required);
    EXPECT_TRUE(height->default_value.is_null());
}

TEST(ShippedConverters, ImageThumbnailsAcceptsJpegPngWebpUpTo50MiB) {
    const Definition def = shipped("image.thumbnails");
    EXPECT_EQ(def.accepts, (std::vector<std::string>{"image/jpeg", "image/png", "image/webp",
                                                     "image/heic", "image/heif", "image/avif"}));
    EXPECT_EQ(def.max_upload_bytes, 50u * 1024 * 1024);
    EXPECT_FALSE(def.accepts_mime("image/gif"));
    EXPECT_EQ(def.run.outputs,
              (std::vector<std::string>{"thumbnail.jpg", "medium.jpg", "large.jpg"}));
    const ParamSpec* quality = def.param("quality");
    ASSERT_NE(quality, nullptr);
    EXPECT_EQ(quality->min, 50);
    EXPECT_EQ(quality->max, 95);
    EXPECT_EQ(quality->default_value, json(82));
}

TEST(ShippedConverters, AudioTranscodeOffersMp3AndOgg) {
    const Definition def = shipped("audio.transcode");
    EXPECT_TRUE(def.accepts_mime("audio/ogg"));
    EXPECT_TRUE(def.accepts_mime("video/webm"));  // an audio-only WebM, as libmagic types it
    EXPECT_FALSE(def.accepts_mime("image/png"));
    EXPECT_EQ(def.param("format")->values, (std::vector<std::string>{"mp3", "ogg"}));
}

TEST(ShippedConverters, TestConvertersLoadBesideShippedOnes) {
    auto defs = load_definitions({shipped_dir, test_dir});
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    ASSERT_TRUE(defs->contains("test.noop"));
    const Definition& noop = defs->at("test.noop");
    EXPECT_EQ(noop.min_files, 0u);
    EXPECT_EQ(noop.max_files, 4u);
    EXPECT_EQ(noop.run.builtin, "noop");
    EXPECT_TRUE(noop.run.program.empty());
    EXPECT_TRUE(noop.accepts_mime("text/plain"));
    EXPECT_TRUE(noop.accepts_mime("application/octet-stream"));
    EXPECT_TRUE(noop.accepts_mime("image/png"));
    EXPECT_FALSE(noop.accepts_mime("image/jpeg"));
}

TEST(ShippedConverters, ShippedDirectoryDoesNotContainTestConverters) {
    auto defs = load_definitions({shipped_dir});
    ASSERT_TRUE(defs.has_value());
    for (const auto& [name, def] : *defs) EXPECT_FALSE(name.starts_with("test.")) << name;
}

// --- Loading valid files -------------------------------------------------------------------

TEST_F(DefinitionFiles, DocumentedExampleLoadsWithEveryField) {
    auto def = load_text(documented_example);
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->name, "video.transcode");
    EXPECT_EQ(def->description, "Transcode a video to MP4 (H.264/AAC) or WebM (VP9/Opus)");
    EXPECT_EQ(def->accepts, std::vector<std::string>{"video/*"});
    EXPECT_EQ(def->max_upload_bytes, 4294967296u);
    EXPECT_EQ(def->timeout, std::chrono::seconds(3600));
    EXPECT_EQ(def->max_attempts, 3u);
    EXPECT_EQ(def->max_output_bytes, 17179869184u);
    ASSERT_EQ(def->params.size(), 2u);
    EXPECT_EQ(def->param("format")->description, "container and codecs");
    EXPECT_EQ(def->run.args,
              (std::vector<std::string>{"-nostdin", "-i", "{input}", "{output:video}"}));
    EXPECT_EQ(def->source, dir_ / "def.toml");
}

TEST_F(DefinitionFiles, OmittedFieldsTakeTheirDefaults) {
    auto def = load_text(minimal_toml);
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->min_files, 1u);
    EXPECT_EQ(def->max_files, 1u);
    EXPECT_EQ(def->timeout, std::chrono::seconds(600));
    EXPECT_EQ(def->max_attempts, 3u);
    EXPECT_TRUE(def->params.empty());
    EXPECT_TRUE(def->run.program.empty());
    EXPECT_TRUE(def->run.builtin.empty());
    EXPECT_EQ(def->run.progress, "none");
}

TEST_F(DefinitionFiles, ConverterWithoutUploadsNeedsNoAcceptsOrSizeLimit) {
    auto def = load_text(R"(
name = "report.daily"
description = "no input"
min_files = 0
max_files = 0
[run]
builtin = "noop"
)");
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->max_files, 0u);
    EXPECT_TRUE(def->accepts.empty());
    EXPECT_EQ(def->max_upload_bytes, 0u);
}

TEST_F(DefinitionFiles, AcceptsPatternsAreStoredLowerCase) {
    auto def = load_text(R"(
name = "x"
description = "x"
accepts = ["Image/PNG", "VIDEO/*"]
max_upload_bytes = 1
)");
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->accepts, (std::vector<std::string>{"image/png", "video/*"}));
}

TEST_F(DefinitionFiles, BooleanParamAndRequiredParamLoad) {
    auto def = load_minimal_with(R"(
[params.strip]
type = "boolean"
default = true
[params.page]
type = "integer"
min = 1
max = 10
required = true
)");
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->param("strip")->kind, ParamSpec::Kind::boolean);
    EXPECT_EQ(def->param("strip")->default_value, json(true));
    EXPECT_TRUE(def->param("page")->required);
}

// --- Every validation error ----------------------------------------------------------------

TEST_F(DefinitionFiles, SyntaxErrorNamesFileAndLine) {
    auto def = load_text("name = \"x\"\ndescription = \n");
    EXPECT_CONFIG_ERROR(def, "def.toml:2:");
}

TEST_F(DefinitionFiles, DuplicateTomlKeyIsASyntaxError) {
    EXPECT_CONFIG_ERROR(load_minimal_with("name = \"again\"\n"), "name");
}

TEST_F(DefinitionFiles, MissingFileIsAConfigErrorWithErrno) {
    auto def = load_definition(dir_ / "def.toml");
    EXPECT_CONFIG_ERROR(def, "cannot read");
    EXPECT_EQ(def.error().native, "ENOENT");
}

TEST_F(DefinitionFiles, OversizedFileIsRejected) {
    std::string content(minimal_toml);
    content += "# " + std::string(2 << 20, 'x') + "\n";
    EXPECT_CONFIG_ERROR(load_text(content), "larger than");
}

TEST_F(DefinitionFiles, MissingNameIsRejected) {
    EXPECT_CONFIG_ERROR(load_text("description = \"x\"\naccepts = [\"a/b\"]\n"
                                  "max_upload_bytes = 1\n"),
                        "name: is required");
}

TEST_F(DefinitionFiles, InvalidNamesAreRejected) {
    for (const std::string& name : std::initializer_list<std::string>{
             "Video", ".video", "-video", "video/transcode", "vid eo", "", std::string(65, 'a')}) {
        EXPECT_CONFIG_ERROR(load_text("name = \"" + name +
                                      "\"\ndescription = \"x\"\naccepts = [\"a/b\"]\n"
                                      "max_upload_bytes = 1\n"),
                            "name:", "does not match");
    }
}

TEST_F(DefinitionFiles, NameOfSixtyFourCharactersIsAccepted) {
    auto def = load_text("name = \"" + std::string(64, 'a') +
                         "\"\ndescription = \"x\"\naccepts = [\"a/b\"]\nmax_upload_bytes = 1\n");
    EXPECT_TRUE(def.has_value()) << def.error().message;
}

TEST_F(DefinitionFiles, NameOfWrongTypeIsRejected) {
    EXPECT_CONFIG_ERROR(load_text("name = 5\ndescription = \"x\"\n"),
                        "name:", "must be a string, not an integer");
}

TEST_F(DefinitionFiles, MissingDescriptionIsRejected) {
    EXPECT_CONFIG_ERROR(load_text("name = \"x\"\naccepts = [\"a/b\"]\nmax_upload_bytes = 1\n"),
                        "description: is required");
}

TEST_F(DefinitionFiles, UnknownTopLevelKeyIsRejectedToCatchTypos) {
    EXPECT_CONFIG_ERROR(load_minimal_with("descripton = \"typo\"\n"), "descripton: unknown key");
    EXPECT_CONFIG_ERROR(load_minimal_with("[runn]\nprogram = \"x\"\n"), "runn: unknown key");
}

TEST_F(DefinitionFiles, EmptyAcceptsIsRejectedWhenFilesAreTaken) {
    EXPECT_CONFIG_ERROR(load_text("name = \"x\"\ndescription = \"x\"\nmax_upload_bytes = 1\n"),
                        "accepts:", "at least one");
    EXPECT_CONFIG_ERROR(
        load_text("name = \"x\"\ndescription = \"x\"\naccepts = []\nmax_upload_bytes = 1\n"),
        "accepts:", "at least one");
}

TEST_F(DefinitionFiles, MalformedAcceptsEntriesAreRejected) {
    for (const char* pattern :
         {"video", "video/", "/mp4", "*/*", "vid eo/mp4", "video/mp4/x", "video/*mp4", "video/;"}) {
        EXPECT_CONFIG_ERROR(load_text(std::string("name = \"x\"\ndescription = \"x\"\n"
                                                  "max_upload_bytes = 1\naccepts = [\"") +
                                      pattern + "\"]\n"),
                            "accepts[0]", "not a MIME type");
    }
}

TEST_F(DefinitionFiles, AcceptsOfWrongTypeIsRejected) {
    EXPECT_CONFIG_ERROR(
        load_text("name = \"x\"\ndescription = \"x\"\nmax_upload_bytes = 1\naccepts = \"a/b\"\n"),
        "accepts:", "array of strings");
    EXPECT_CONFIG_ERROR(
        load_text("name = \"x\"\ndescription = \"x\"\nmax_upload_bytes = 1\naccepts = [1]\n"),
        "accepts[0]:", "must be a string");
}

TEST_F(DefinitionFiles, DuplicateAcceptsEntryIsRejected) {
    EXPECT_CONFIG_ERROR(load_text("name = \"x\"\ndescription = \"x\"\nmax_upload_bytes = 1\n"
                                  "accepts = [\"image/png\", \"IMAGE/png\"]\n"),
                        "accepts[1]", "duplicate");
}

TEST_F(DefinitionFiles, MaxUploadBytesIsRequiredAndPositiveWhenFilesAreTaken) {
    EXPECT_CONFIG_ERROR(load_text("name = \"x\"\ndescription = \"x\"\naccepts = [\"a/b\"]\n"),
                        "max_upload_bytes: is required");
    for (const char* value : {"0", "-1"}) {
        EXPECT_CONFIG_ERROR(load_text(std::string("name = \"x\"\ndescription = \"x\"\n"
                                                  "accepts = [\"a/b\"]\nmax_upload_bytes = ") +
                                      value + "\n"),
                            "max_upload_bytes:", "greater than 0");
    }
    EXPECT_CONFIG_ERROR(load_text("name = \"x\"\ndescription = \"x\"\naccepts = [\"a/b\"]\n"
                                  "max_upload_bytes = \"1G\"\n"),
                        "max_upload_bytes:", "must be an integer, not a string");
}

TEST_F(DefinitionFiles, MinFilesAboveMaxFilesIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("min_files = 3\nmax_files = 2\n"),
                        "min_files:", "greater than max_files");
}

TEST_F(DefinitionFiles, FileCountsOutsideZeroToSixtyFourAreRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("max_files = 65\n"), "max_files:", "between 0 and 64");
    EXPECT_CONFIG_ERROR(load_minimal_with("min_files = -1\n"), "min_files:", "between 0 and 64");
    auto def = load_minimal_with("max_files = 64\n");
    EXPECT_TRUE(def.has_value()) << def.error().message;
}

TEST_F(DefinitionFiles, TimeoutOutsideOneSecondToOneDayIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("timeout_seconds = 0\n"),
                        "timeout_seconds:", "between 1 and 86400");
    EXPECT_CONFIG_ERROR(load_minimal_with("timeout_seconds = 86401\n"), "timeout_seconds:");
    EXPECT_CONFIG_ERROR(load_minimal_with("timeout_seconds = 1.5\n"),
                        "timeout_seconds:", "not a float");
    EXPECT_TRUE(load_minimal_with("timeout_seconds = 86400\n").has_value());
}

TEST_F(DefinitionFiles, MaxOutputBytesIsOptionalAndBounded) {
    EXPECT_FALSE(load_minimal_with("")->max_output_bytes.has_value());
    EXPECT_EQ(load_minimal_with("max_output_bytes = 1\n")->max_output_bytes, 1u);
    EXPECT_CONFIG_ERROR(load_minimal_with("max_output_bytes = 0\n"), "max_output_bytes:");
    EXPECT_CONFIG_ERROR(load_minimal_with("max_output_bytes = 8796093022209\n"),
                        "max_output_bytes:");
}

TEST_F(DefinitionFiles, MaxAttemptsOutsideOneToHundredIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("max_attempts = 0\n"),
                        "max_attempts:", "between 1 and 100");
    EXPECT_CONFIG_ERROR(load_minimal_with("max_attempts = 101\n"), "max_attempts:");
    EXPECT_TRUE(load_minimal_with("max_attempts = 100\n").has_value());
}

TEST_F(DefinitionFiles, ParamsThatIsNotATableIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("params = 1\n"), "params:", "must be a table");
    EXPECT_CONFIG_ERROR(load_minimal_with("params = { quality = 1 }\n"),
                        "params.quality:", "must be a table");
}

TEST_F(DefinitionFiles, InvalidParamNameIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.Height]\ntype = \"boolean\"\n"),
                        "params.Height:", "param names");
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.\"a-b\"]\ntype = \"boolean\"\n"), "params.a-b:");
}

TEST_F(DefinitionFiles, MoreThanThirtyTwoParamsAreRejected) {
    std::string params;
    for (int i = 0; i < 33; ++i)
        params += "[params.p" + std::to_string(i) + "]\ntype = \"boolean\"\n";
    EXPECT_CONFIG_ERROR(load_minimal_with(params), "params:", "more than 32");
}

TEST_F(DefinitionFiles, UnknownParamTypeIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"float\"\n"),
                        "params.p.type:", "not one of enum, integer, boolean");
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ndescription = \"x\"\n"),
                        "params.p.type: is required");
}

TEST_F(DefinitionFiles, UnknownKeyInParamIsRejected) {
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"enum\"\nvalues = [\"a\"]\ndefualt = \"a\"\n"),
        "params.p.defualt: unknown key");
}

TEST_F(DefinitionFiles, EnumWithoutValuesIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"enum\"\n"),
                        "params.p.values:", "required");
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"enum\"\nvalues = []\n"),
                        "params.p.values:", "must not be empty");
}

TEST_F(DefinitionFiles, EnumDefaultOutsideValuesIsRejected) {
    EXPECT_CONFIG_ERROR(
        load_minimal_with(
            "[params.p]\ntype = \"enum\"\nvalues = [\"a\", \"b\"]\ndefault = \"c\"\n"),
        "params.p.default:", "not one of the values");
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"enum\"\nvalues = [\"a\"]\ndefault = 1\n"),
        "params.p.default:", "must be a string");
}

TEST_F(DefinitionFiles, UnsafeOrDuplicateEnumValuesAreRejected) {
    for (const char* value : {"../x", "a/b", "-rf", ".hidden", "a b", "x;y", ""}) {
        EXPECT_CONFIG_ERROR(load_minimal_with(std::string("[params.p]\ntype = \"enum\"\n"
                                                          "values = [\"") +
                                              value + "\"]\n"),
                            "params.p.values[0]:", "not a valid enum value");
    }
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"enum\"\nvalues = [\"a\", \"a\"]\n"),
                        "params.p.values[1]:", "duplicate");
}

TEST_F(DefinitionFiles, IntegerWithMinAboveMaxIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"integer\"\nmin = 5\nmax = 4\n"),
                        "params.p.min:", "greater than max");
}

TEST_F(DefinitionFiles, IntegerWithoutBoundsIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"integer\"\nmax = 4\n"),
                        "params.p.min:", "required");
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"integer\"\nmin = 4\n"),
                        "params.p.max:", "required");
}

TEST_F(DefinitionFiles, IntegerDefaultOutsideRangeIsRejected) {
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"integer\"\nmin = 1\nmax = 4\ndefault = 5\n"),
        "params.p.default:", "outside");
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"integer\"\nmin = 1\nmax = 4\ndefault = 2.0\n"),
        "params.p.default:", "must be an integer");
}

TEST_F(DefinitionFiles, BooleanDefaultOfWrongTypeIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"boolean\"\ndefault = \"yes\"\n"),
                        "params.p.default:", "must be a boolean");
}

TEST_F(DefinitionFiles, KeysOfAnotherParamTypeAreRejected) {
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"integer\"\nmin = 1\nmax = 2\nvalues = [\"a\"]\n"),
        "params.p:", "only allowed for enum");
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"enum\"\nvalues = [\"a\"]\nmin = 1\n"),
        "params.p:", "only allowed for integer");
    EXPECT_CONFIG_ERROR(load_minimal_with("[params.p]\ntype = \"boolean\"\nmax = 1\n"),
                        "params.p:", "only allowed for integer");
}

TEST_F(DefinitionFiles, RequiredParamWithDefaultIsRejected) {
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[params.p]\ntype = \"boolean\"\ndefault = true\nrequired = true\n"),
        "params.p.required:", "cannot be required");
}

TEST_F(DefinitionFiles, RunNeedsExactlyOneOfProgramAndBuiltin) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\nbuiltin = \"noop\"\n"),
                        "run:", "exactly one");
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nargs = []\n"), "run:", "exactly one");
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"\"\n"),
                        "run.program:", "must not be empty");
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nbuiltin = \"No Op\"\n"), "run.builtin:");
}

TEST_F(DefinitionFiles, UnknownProgressIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\nprogress = \"percent\"\n"),
                        "run.progress:", "none, ffmpeg, lines");
    for (const char* progress : {"none", "ffmpeg", "lines"}) {
        auto def = load_minimal_with(std::string("[run]\nprogram = \"a\"\nprogress = \"") +
                                     progress + "\"\n");
        ASSERT_TRUE(def.has_value()) << def.error().message;
        EXPECT_EQ(def->run.progress, progress);
    }
}

TEST_F(DefinitionFiles, PermanentErrorsAreBoundedNonEmptyTexts) {
    auto def = load_minimal_with(
        "[run]\nprogram = \"a\"\npermanent_errors = [\"Invalid data\", \"no streams\"]\n");
    ASSERT_TRUE(def.has_value()) << def.error().message;
    EXPECT_EQ(def->run.permanent_errors, (std::vector<std::string>{"Invalid data", "no streams"}));
    EXPECT_TRUE(load_minimal_with("[run]\nprogram = \"a\"\n")->run.permanent_errors.empty());
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\npermanent_errors = [\"\"]\n"),
                        "run.permanent_errors[0]:", "1 to 256 bytes");
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\npermanent_errors = [\"" +
                                          std::string(257, 'x') + "\"]\n"),
                        "run.permanent_errors[0]:");
    std::string many = "[run]\nprogram = \"a\"\npermanent_errors = [";
    for (int i = 0; i < 33; ++i) many += "\"e\",";
    EXPECT_CONFIG_ERROR(load_minimal_with(many + "]\n"), "run.permanent_errors:", "at most 32");
}

TEST_F(DefinitionFiles, UnknownKeyInRunIsRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\narguments = []\n"),
                        "run.arguments: unknown key");
}

TEST_F(DefinitionFiles, NonStringArgsAreRejected) {
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\nargs = [\"-i\", 3]\n"),
                        "run.args[1]:", "must be a string");
    EXPECT_CONFIG_ERROR(load_minimal_with("[run]\nprogram = \"a\"\nargs = [\"a\\u0000b\"]\n"),
                        "run.args[0]:", "NUL");
}

TEST_F(DefinitionFiles, OutputsThatAreNotPlainFileNamesAreRejected) {
    for (const char* output : {"../x.jpg", "a/b.jpg", ".hidden", "a\\\\b", ""}) {
        EXPECT_CONFIG_ERROR(load_minimal_with(std::string("[run]\nprogram = \"a\"\noutputs = [\"") +
                                              output + "\"]\n"),
                            "run.outputs[0]:", "single file name");
    }
    EXPECT_CONFIG_ERROR(
        load_minimal_with("[run]\nprogram = \"a\"\noutputs = [\"a.jpg\", \"a.jpg\"]\n"),
        "run.outputs[1]:", "duplicate");
}

// --- Directories ---------------------------------------------------------------------------

TEST_F(DefinitionFiles, MissingDirectoryIsAnError) {
    auto defs = load_definitions({dir_ / "nope"});
    ASSERT_FALSE(defs.has_value());
    EXPECT_EQ(defs.error().code, ErrorCode::config);
    EXPECT_NE(defs.error().message.find("nope"), std::string::npos);
}

TEST_F(DefinitionFiles, FileGivenAsDirectoryIsAnError) {
    auto defs = load_definitions({write("a.toml", minimal_toml)});
    ASSERT_FALSE(defs.has_value());
    EXPECT_NE(defs.error().message.find("not a directory"), std::string::npos);
}

TEST_F(DefinitionFiles, OnlyTomlFilesAreReadAndDotFilesAreSkipped) {
    write("a.toml", minimal_toml);
    write("README.md", "not toml");
    write("b.toml.orig", "garbage =");
    write(".#a.toml", "garbage =");
    fs::create_directory(dir_ / "sub.toml");
    auto defs = load_definitions({dir_});
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    EXPECT_EQ(defs->size(), 1u);
    EXPECT_TRUE(defs->contains("test.minimal"));
}

TEST_F(DefinitionFiles, EmptyDirectoryGivesNoConverters) {
    auto defs = load_definitions({dir_});
    ASSERT_TRUE(defs.has_value());
    EXPECT_TRUE(defs->empty());
}

TEST_F(DefinitionFiles, InvalidFileFailsTheWholeLoad) {
    write("a.toml", minimal_toml);
    write("b.toml", "name = \"b\"\n");
    auto defs = load_definitions({dir_});
    ASSERT_FALSE(defs.has_value());
    EXPECT_NE(defs.error().message.find("b.toml"), std::string::npos);
}

TEST_F(DefinitionFiles, DuplicateNameIsAnErrorNamingBothFilesInSortedOrder) {
    write("b.toml", minimal_toml);
    write("a.toml", minimal_toml);
    auto defs = load_definitions({dir_});
    ASSERT_FALSE(defs.has_value());
    const std::string& message = defs.error().message;
    EXPECT_EQ(defs.error().code, ErrorCode::config);
    EXPECT_NE(message.find("b.toml: name: 'test.minimal' is already defined in"), std::string::npos)
        << message;
    EXPECT_NE(message.find("a.toml", message.find("already defined")), std::string::npos)
        << message;
}

TEST_F(DefinitionFiles, DuplicateNameAcrossDirectoriesIsAnError) {
    auto defs = load_definitions({shipped_dir, shipped_dir});
    ASSERT_FALSE(defs.has_value());
    EXPECT_NE(defs.error().message.find("already defined"), std::string::npos);
}

// --- accepts_mime and param ----------------------------------------------------------------

Definition with_accepts(std::vector<std::string> accepts) {
    Definition def;
    def.name = "t";
    def.accepts = std::move(accepts);
    return def;
}

TEST(AcceptsMime, ExactTypeMatches) {
    const auto def = with_accepts({"image/png", "text/plain"});
    EXPECT_TRUE(def.accepts_mime("image/png"));
    EXPECT_TRUE(def.accepts_mime("text/plain"));
    EXPECT_FALSE(def.accepts_mime("image/jpeg"));
    EXPECT_FALSE(def.accepts_mime("image/pn"));
    EXPECT_FALSE(def.accepts_mime("image/pngx"));
}

TEST(AcceptsMime, WildcardMatchesEverySubtypeOfItsTypeOnly) {
    const auto def = with_accepts({"video/*"});
    EXPECT_TRUE(def.accepts_mime("video/mp4"));
    EXPECT_TRUE(def.accepts_mime("video/x-matroska"));
    EXPECT_FALSE(def.accepts_mime("videos/mp4"));
    EXPECT_FALSE(def.accepts_mime("audio/mp4"));
    EXPECT_FALSE(def.accepts_mime("video/"));
    EXPECT_FALSE(def.accepts_mime("video"));
}

TEST(AcceptsMime, ComparisonIsCaseInsensitive) {
    EXPECT_TRUE(with_accepts({"image/png"}).accepts_mime("IMAGE/PNG"));
    EXPECT_TRUE(with_accepts({"video/*"}).accepts_mime("Video/MP4"));
}

TEST(AcceptsMime, ParametersAfterSemicolonAreIgnored) {
    const auto def = with_accepts({"text/plain"});
    EXPECT_TRUE(def.accepts_mime("text/plain; charset=utf-8"));
    EXPECT_TRUE(def.accepts_mime("text/plain;charset=us-ascii"));
    EXPECT_FALSE(def.accepts_mime("text/html; x=text/plain"));
}

TEST(AcceptsMime, MalformedOrWildcardUploadTypesMatchNothing) {
    const auto def = with_accepts({"video/*", "image/png"});
    for (const char* mime : {"", "/", "*/*", "video/*", "image/png/x", " ", ";image/png"}) {
        EXPECT_FALSE(def.accepts_mime(mime)) << mime;
    }
}

TEST(AcceptsMime, EmptyAcceptsMatchesNothing) {
    EXPECT_FALSE(with_accepts({}).accepts_mime("image/png"));
}

TEST(DefinitionParam, FindsParamByNameOrReturnsNull) {
    const Definition def = shipped("video.transcode");
    ASSERT_NE(def.param("height"), nullptr);
    EXPECT_EQ(def.param("height")->name, "height");
    EXPECT_EQ(def.param("width"), nullptr);
    EXPECT_EQ(def.param(""), nullptr);
}

// --- validate_params -----------------------------------------------------------------------

class ValidateParams : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { transcode_ = new Definition(shipped("video.transcode")); }
    static void TearDownTestSuite() {
        delete transcode_;
        transcode_ = nullptr;
    }

    static Result<json> validate(const json& params) {
        return validate_params(*transcode_, params);
    }

    // One param of each kind, one required.
    static Definition all_kinds() {
        Definition def;
        def.name = "test.kinds";
        ParamSpec flag;
        flag.name = "flag";
        flag.kind = ParamSpec::Kind::boolean;
        ParamSpec page;
        page.name = "page";
        page.kind = ParamSpec::Kind::integer;
        page.min = -5;
        page.max = 5;
        page.required = true;
        def.params = {flag, page};
        return def;
    }

    static inline Definition* transcode_ = nullptr;
};

#define EXPECT_INVALID_REQUEST(result, fragment)                        \
    do {                                                                \
        const auto& r_ = (result);                                      \
        ASSERT_FALSE(r_.has_value()) << "accepted: " << r_->dump();     \
        EXPECT_EQ(r_.error().code, ErrorCode::invalid_request);         \
        EXPECT_NE(r_.error().message.find(fragment), std::string::npos) \
            << "'" << (fragment) << "' not in: " << r_.error().message; \
    } while (false)

TEST_F(ValidateParams, AnIntegerGivenAsAStringOrFractionIsNamedForWhatItIs) {
    EXPECT_INVALID_REQUEST(validate_params(all_kinds(), json{{"page", "3"}}),
                           "must be an integer from -5 to 5, not a JSON string");
    EXPECT_INVALID_REQUEST(validate_params(all_kinds(), json{{"page", 3.5}}),
                           "not a number with a fraction");
    EXPECT_INVALID_REQUEST(validate_params(all_kinds(), json{{"page", true}}),
                           "not a JSON boolean");
}

TEST_F(ValidateParams, NullParamsGiveTheDefaults) {
    auto out = validate(json());
    ASSERT_TRUE(out.has_value()) << out.error().message;
    EXPECT_EQ(*out, json({{"format", "mp4"}}));
}

TEST_F(ValidateParams, EmptyObjectGivesTheDefaults) {
    auto out = validate(json::object());
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(*out, json({{"format", "mp4"}}));
}

TEST_F(ValidateParams, ValidParamsAreReturnedWithKeysSorted) {
    auto out = validate(json::parse(R"({"height": 720, "format": "webm"})"));
    ASSERT_TRUE(out.has_value()) << out.error().message;
    EXPECT_EQ(out->dump(), R"({"format":"webm","height":720})");
}

TEST_F(ValidateParams, OmittedDefaultIsFilledAndOptionalParamStaysAbsent) {
    auto out = validate(json::parse(R"({"height": 480})"));
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(out->dump(), R"({"format":"mp4","height":480})");
    out = validate(json::parse(R"({"format": "webm"})"));
    ASSERT_TRUE(out.has_value());
    EXPECT_FALSE(out->contains("height"));
}

TEST_F(ValidateParams, IntegerBoundsAreInclusive) {
    EXPECT_TRUE(validate(json::parse(R"({"height": 240})")).has_value());
    EXPECT_TRUE(validate(json::parse(R"({"height": 2160})")).has_value());
}

TEST_F(ValidateParams, IntegerOutOfRangeIsRejected) {
    for (const char* text :
         {R"({"height": 239})", R"({"height": 2161})", R"({"height": -720})",
          R"({"height": 18446744073709551615})", R"({"height": -9223372036854775808})"}) {
        EXPECT_INVALID_REQUEST(validate(json::parse(text)), "param 'height'");
    }
}

TEST_F(ValidateParams, FloatForIntegerIsRejectedEvenWhenWhole) {
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": 720.0})")), "param 'height'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": 720.5})")), "param 'height'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": 7.2e2})")), "param 'height'");
}

TEST_F(ValidateParams, StringOrBoolForIntegerIsRejected) {
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": "720"})")), "param 'height'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": true})")), "param 'height'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": null})")), "param 'height'");
}

TEST_F(ValidateParams, UnknownKeyIsRejectedNamingParamAndConverter) {
    auto out = validate(json::parse(R"({"format": "mp4", "x": 1})"));
    ASSERT_FALSE(out.has_value());
    EXPECT_EQ(out.error().code, ErrorCode::invalid_request);
    EXPECT_EQ(out.error().message, "unknown param 'x' for video.transcode");
}

TEST_F(ValidateParams, UnknownKeyIsQuotedSafelyAndBounded) {
    json params = json::object();
    params[std::string(1000, 'k') + "\n\xC3\xA9"] = 1;
    auto out = validate(params);
    ASSERT_FALSE(out.has_value());
    EXPECT_LT(out.error().message.size(), 120u);
    EXPECT_EQ(out.error().message.find('\n'), std::string::npos);
}

TEST_F(ValidateParams, NestedObjectsAndArraysAreRejected) {
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"format": {"value": "mp4"}})")),
                           "param 'format'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"format": ["mp4"]})")), "param 'format'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"height": {"min": 240}})")), "param 'height'");
}

TEST_F(ValidateParams, EnumValueOutsideValuesIsRejected) {
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"format": "avi"})")),
                           "param 'format' for video.transcode must be one of: mp4, webm");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"format": "MP4"})")), "param 'format'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"format": ""})")), "param 'format'");
    EXPECT_INVALID_REQUEST(validate(json::parse(R"({"format": 4})")), "param 'format'");
}

TEST_F(ValidateParams, EnumStringLongerThan256BytesIsRejected) {
    EXPECT_INVALID_REQUEST(validate(json{{"format", std::string(257, 'm')}}), "longer than 256");
}

TEST_F(ValidateParams, NonObjectParamsAreRejected) {
    for (const char* text : {"[]", R"(["format"])", R"("format=mp4")", "1", "true"}) {
        EXPECT_INVALID_REQUEST(validate(json::parse(text)), "params must be a JSON object");
    }
}

TEST_F(ValidateParams, MoreThanThirtyTwoKeysAreRejected) {
    json params = json::object();
    for (int i = 0; i < 33; ++i) params["k" + std::to_string(i)] = i;
    EXPECT_INVALID_REQUEST(validate(params), "more than 32");
}

TEST_F(ValidateParams, BooleanParamNeedsAJsonBool) {
    const Definition def = all_kinds();
    auto out = validate_params(def, json{{"flag", false}, {"page", 0}});
    ASSERT_TRUE(out.has_value()) << out.error().message;
    EXPECT_EQ(*out, (json{{"flag", false}, {"page", 0}}));
    EXPECT_INVALID_REQUEST(validate_params(def, json{{"flag", "true"}, {"page", 0}}),
                           "param 'flag'");
    EXPECT_INVALID_REQUEST(validate_params(def, json{{"flag", 1}, {"page", 0}}), "param 'flag'");
}

TEST_F(ValidateParams, NegativeIntegersWithinRangeAreAccepted) {
    auto out = validate_params(all_kinds(), json{{"page", -5}});
    ASSERT_TRUE(out.has_value()) << out.error().message;
    EXPECT_EQ(*out, json({{"page", -5}}));
}

TEST_F(ValidateParams, MissingRequiredParamIsRejected) {
    EXPECT_INVALID_REQUEST(validate_params(all_kinds(), json()),
                           "missing required param 'page' for test.kinds");
    EXPECT_INVALID_REQUEST(validate_params(all_kinds(), json{{"flag", true}}),
                           "missing required param 'page'");
}

TEST_F(ValidateParams, ConverterWithoutParamsAcceptsOnlyEmptyParams) {
    Definition def;
    def.name = "plain";
    auto out = validate_params(def, json());
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(*out, json::object());
    EXPECT_INVALID_REQUEST(validate_params(def, json{{"a", 1}}), "unknown param 'a' for plain");
}

// --- to_public_json ------------------------------------------------------------------------

TEST(PublicJson, DescribesLimitsAndParamsWithoutTheRunSection) {
    const json j = to_public_json(shipped("video.transcode"));
    EXPECT_EQ(j["name"], "video.transcode");
    EXPECT_EQ(j["description"], "Transcode a video to MP4 (H.264/AAC) or WebM (VP9/Opus)");
    EXPECT_EQ(j["accepts"], json({"video/*"}));
    EXPECT_EQ(j["max_upload_bytes"], 4294967296u);
    EXPECT_EQ(j["min_files"], 1);
    EXPECT_EQ(j["max_files"], 1);
    EXPECT_EQ(j["timeout_seconds"], 3600);
    EXPECT_EQ(j["max_attempts"], 3);
    EXPECT_FALSE(j.contains("max_output_bytes"));  // unset: the worker's own limit
    EXPECT_EQ(to_public_json(shipped("image.thumbnails"))["max_output_bytes"], 67108864);
    EXPECT_FALSE(j.contains("run"));
    EXPECT_FALSE(j.contains("source"));
    EXPECT_EQ(j.dump().find("ffmpeg"), std::string::npos);

    const json& format = j["params"]["format"];
    EXPECT_EQ(format["type"], "enum");
    EXPECT_EQ(format["values"], json({"mp4", "webm"}));
    EXPECT_EQ(format["default"], "mp4");
    EXPECT_EQ(format["required"], false);
    EXPECT_TRUE(format["description"].is_string());
    EXPECT_FALSE(format.contains("min"));

    const json& height = j["params"]["height"];
    EXPECT_EQ(height["type"], "integer");
    EXPECT_EQ(height["min"], 240);
    EXPECT_EQ(height["max"], 2160);
    EXPECT_EQ(height["required"], false);
    EXPECT_FALSE(height.contains("default"));
    EXPECT_FALSE(height.contains("values"));
}

TEST(PublicJson, BooleanParamHasTypeAndDefault) {
    auto defs = load_definitions({test_dir});
    ASSERT_TRUE(defs.has_value()) << defs.error().message;
    const json j = to_public_json(defs->at("test.noop"));
    EXPECT_EQ(j["params"]["fail"], json({{"type", "boolean"},
                                         {"default", false},
                                         {"required", false},
                                         {"description", j["params"]["fail"]["description"]}}));
    EXPECT_EQ(j["min_files"], 0);
    EXPECT_EQ(j["max_files"], 4);
}

TEST(PublicJson, ConverterWithoutParamsHasEmptyParamsObject) {
    Definition def;
    def.name = "plain";
    const json j = to_public_json(def);
    EXPECT_TRUE(j["params"].is_object());
    EXPECT_TRUE(j["params"].empty());
}

}  // namespace
}  // namespace kiln::converters
