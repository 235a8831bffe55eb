// kiln-worker end to end: real ffmpeg and vips on generated media through nginx, failures with
// their reasons, progress as clients see it.

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <tuple>

#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/jobs.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

class Worker : public ::testing::Test {
  protected:
    const Stack& stack = Stack::get();
    Client client = stack.admin();

    std::string create(const std::vector<Part>& parts) {
        auto r = client.post_multipart("/api/v1/jobs", parts);
        EXPECT_EQ(r.status, 201) << r.body;
        return r.json().value("id", "");
    }

    std::string create_json(const std::string& body) {
        auto r = client.post_json("/api/v1/jobs", body);
        EXPECT_EQ(r.status, 201) << r.body;
        return r.json().value("id", "");
    }

    // Downloads a result through nginx into the scratch directory.
    std::filesystem::path download(const std::string& id, const std::string& name) {
        auto r = client.get("/api/v1/jobs/" + id + "/results/" + name);
        EXPECT_EQ(r.status, 200) << r.body;
        auto path = scratch_dir() / (id + "-" + name);
        std::ofstream(path, std::ios::binary) << r.body;
        return path;
    }

    static std::map<std::string, nlohmann::json> results_by_name(const nlohmann::json& job) {
        std::map<std::string, nlohmann::json> out;
        for (const auto& r : job["results"]) out[r["name"]] = r;
        return out;
    }
};

bool rises(const std::vector<int>& values) { return std::is_sorted(values.begin(), values.end()); }

bool has_intermediate(const std::vector<int>& values) {
    return std::any_of(values.begin(), values.end(), [](int p) { return p > 0 && p < 100; });
}

TEST_F(Worker, VideoTranscodeToWebmShowsRisingProgressAndGivesVp9AndOpus) {
    const auto id = create({{"type", "video.transcode"},
                            {"params", R"({"format":"webm"})"},
                            {"file", "", media::video20s()}});
    auto w = watch_job(client, id);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    EXPECT_EQ(w.job["progress"], 100);
    EXPECT_TRUE(rises(w.progress)) << nlohmann::json(w.progress).dump();
    EXPECT_TRUE(has_intermediate(w.progress)) << nlohmann::json(w.progress).dump();
    EXPECT_FALSE(w.job["started_at"].is_null());
    EXPECT_FALSE(w.job["finished_at"].is_null());
    EXPECT_EQ(w.job["attempts"], 1);

    auto results = results_by_name(w.job);
    ASSERT_TRUE(results.count("video.webm")) << w.job.dump();
    EXPECT_EQ(results["video.webm"]["content_type"], "video/webm");
    auto file = download(id, "video.webm");
    EXPECT_EQ(std::filesystem::file_size(file), results["video.webm"]["size"].get<std::uint64_t>());
    auto info = probe(file.string());
    std::set<std::string> codecs;
    for (const auto& s : info["streams"]) codecs.insert(s["codec_name"].get<std::string>());
    EXPECT_TRUE(codecs.count("vp9")) << info.dump();
    EXPECT_TRUE(codecs.count("opus")) << info.dump();
    EXPECT_NEAR(std::stod(info["format"]["duration"].get<std::string>()), 20.0, 0.3);
    // ffmpeg's progress reports, which moved the progress above, are not kept as a log: with
    // nothing else to say, the attempt left none.
    auto logs = client.get("/api/v1/jobs/" + id + "/logs").json()["logs"];
    EXPECT_EQ(logs.size(), 0u) << logs.dump();
}

TEST_F(Worker, VideoTranscodeToMp4ScalesToTheRequestedHeightWithFaststart) {
    const auto id = create({{"type", "video.transcode"},
                            {"params", R"({"format":"mp4","height":240})"},
                            {"file", "", media::video5s()}});
    auto w = watch_job(client, id);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    auto file = download(id, "video.mp4");
    auto info = probe(file.string());
    for (const auto& s : info["streams"]) {
        if (s["codec_type"] == "video") {
            EXPECT_EQ(s["codec_name"], "h264");
            EXPECT_EQ(s["height"], 240);
            EXPECT_EQ(s["width"], 426);
        } else {
            EXPECT_EQ(s["codec_name"], "aac");
        }
    }
    EXPECT_EQ(info["streams"].size(), 2u);
    EXPECT_NEAR(std::stod(info["format"]["duration"].get<std::string>()), 5.0, 0.3);
    // faststart: the index (moov) comes before the media data (mdat).
    const std::string bytes = read_file(file);
    EXPECT_LT(bytes.find("moov"), bytes.find("mdat"));
}

// Two frames ten hours apart: filled in at the frame rate, they made 900,000 frames and kept a
// worker busy until the timeout, three attempts in a row. Frames keep their timestamps instead.
TEST_F(Worker, VideoTranscodeDoesNotFillATimestampGapWithCopiedFrames) {
    const auto id = create({{"type", "video.transcode"},
                            {"params", R"({"format":"mp4"})"},
                            {"file", "", media::gap_video()}});
    auto w = watch_job(client, id, std::chrono::seconds(60));
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    EXPECT_LT(std::filesystem::file_size(download(id, "video.mp4")), 100'000u);
}

// H.264 in yuv420p needs even dimensions: an odd-sized source and an odd height param are rounded
// down to even instead of failing the job ("width not divisible by 2").
TEST_F(Worker, VideoTranscodeToMp4RoundsOddDimensionsDownToEven) {
    const auto odd_source = create({{"type", "video.transcode"},
                                    {"params", R"({"format":"mp4"})"},
                                    {"file", "", media::odd_sized_video()}});
    const auto odd_height = create({{"type", "video.transcode"},
                                    {"params", R"({"format":"mp4","height":241})"},
                                    {"file", "", media::video5s()}});
    for (const auto& [id, width, height] :
         {std::tuple{odd_source, 320, 240}, std::tuple{odd_height, 426, 240}}) {
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
        auto info = probe(download(id, "video.mp4").string());
        ASSERT_FALSE(info["streams"].empty()) << info.dump();
        const auto& video = info["streams"][0];
        EXPECT_EQ(video["codec_name"], "h264") << info.dump();
        EXPECT_EQ(video["width"], width) << info.dump();
        EXPECT_EQ(video["height"], height) << info.dump();
    }
}

// Also for a short recording whose header declares no duration (ffprobe says N/A): a seek to
// 2 s would find no frame in it.
TEST_F(Worker, VideoThumbnailIsOneJpegFrameEvenForAVideoShorterThanTwoSeconds) {
    const auto declared = run_command({"ffprobe", "-v", "error", "-show_entries", "format=duration",
                                       "-of", "csv=p=0", media::live_webm().string()});
    ASSERT_EQ(declared.substr(0, 3), "N/A") << "the live WebM must declare no duration";
    for (const auto* video : {&media::video5s(), &media::short_video(), &media::live_webm()}) {
        const auto id = create({{"type", "video.thumbnail"}, {"file", "", *video}});
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
        auto file = download(id, "thumbnail.jpg");
        auto info = probe(file.string());
        ASSERT_EQ(info["streams"].size(), 1u);
        EXPECT_EQ(info["streams"][0]["codec_name"], "mjpeg");
        EXPECT_LE(info["streams"][0]["width"].get<int>(), 640);
        // ffmpeg had nothing to warn about, so the attempt left no log to read.
        EXPECT_EQ(client.get("/api/v1/jobs/" + id + "/logs").json()["logs"].size(), 0u)
            << video->filename();
    }
}

// A frame narrower than the width asked for is not scaled, and keeps its odd height.
TEST_F(Worker, VideoThumbnailOfAnOddSizedVideoKeepsItsSize) {
    const auto id = create({{"type", "video.thumbnail"}, {"file", "", media::odd_sized_video()}});
    auto w = watch_job(client, id);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    auto info = probe(download(id, "thumbnail.jpg").string());
    ASSERT_EQ(info["streams"].size(), 1u);
    EXPECT_EQ(info["streams"][0]["width"], 321);
    EXPECT_EQ(info["streams"][0]["height"], 241);
}

TEST_F(Worker, ImageThumbnailsHaveTheReferenceSizesAndNeverUpscale) {
    struct Case {
        std::filesystem::path image;
        std::map<std::string, std::pair<int, int>> sizes;
    };
    const std::map<std::string, std::pair<int, int>> small_sizes = {
        {"thumbnail.jpg", {150, 150}}, {"medium.jpg", {400, 300}}, {"large.jpg", {400, 300}}};
    const std::vector<Case> cases = {
        {media::big_png(),
         {{"thumbnail.jpg", {150, 150}}, {"medium.jpg", {800, 600}}, {"large.jpg", {1440, 1080}}}},
        {media::small_png(), small_sizes},
        {media::heic(), small_sizes},  // iPhone photos
        {media::avif(), small_sizes},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.image.string());
        const auto id = create({{"type", "image.thumbnails"}, {"file", "", c.image}});
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
        auto results = results_by_name(w.job);
        ASSERT_EQ(results.size(), 3u) << w.job.dump();
        for (const auto& [name, size] : c.sizes) {
            EXPECT_EQ(results[name]["content_type"], "image/jpeg");
            auto info = probe(download(id, name).string());
            EXPECT_EQ(info["streams"][0]["width"], size.first) << name;
            EXPECT_EQ(info["streams"][0]["height"], size.second) << name;
        }
    }
}

// JPEG has no alpha: a transparent PNG (a logo, a cut-out) is flattened onto white, as users
// expect, not onto black as vips does by default.
TEST_F(Worker, ImageThumbnailsOfATransparentImageHaveAWhiteBackground) {
    const auto id = create({{"type", "image.thumbnails"}, {"file", "", media::transparent_png()}});
    auto w = watch_job(client, id);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    for (const char* name : {"thumbnail.jpg", "medium.jpg", "large.jpg"}) {
        const auto file = download(id, name);
        // "R G B" of a pixel; JPEG rounding may move white by a step or two.
        std::istringstream pixel(run_command({"vips", "getpoint", file.string(), "5", "5"}));
        int r = 0, g = 0, b = 0;
        pixel >> r >> g >> b;
        EXPECT_GE(std::min({r, g, b}), 250) << name << ": " << r << " " << g << " " << b;
    }
}

// An image whose data ends early (an upload cut short on the client's side) fails at once with
// libvips' reason, rather than completing with the missing rows painted grey.
TEST_F(Worker, ATruncatedImageFailsAtOnceInsteadOfGivingGreyThumbnails) {
    const auto jpeg = scratch_dir() / "big-pattern.jpg";
    run_command({"vips", "copy", media::big_png().string(), jpeg.string()});
    const std::string png_bytes = read_file(media::big_png());
    const std::string jpeg_bytes = read_file(jpeg);
    const std::vector<std::pair<std::filesystem::path, std::string>> cases = {
        {make_file("cut.png", png_bytes, png_bytes.size() / 3), "libpng read error"},
        {make_file("cut.jpg", jpeg_bytes, jpeg_bytes.size() / 3), "Premature end of"},
    };
    for (const auto& [image, reason] : cases) {
        SCOPED_TRACE(image.string());
        const auto id = create({{"type", "image.thumbnails"}, {"file", "", image}});
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
        EXPECT_EQ(w.job["attempts"], 1) << w.job.dump();
        const std::string error = w.job["error"];
        EXPECT_NE(error.find(reason), std::string::npos) << error;
        EXPECT_NE(error.find("not retried"), std::string::npos) << error;
        EXPECT_TRUE(w.job["results"].empty()) << w.job.dump();
    }
}

TEST_F(Worker, ImageThumbnailsApplyTheExifOrientationAndStripMetadata) {
    const auto id = create({{"type", "image.thumbnails"}, {"file", "", media::rotated_jpeg()}});
    auto w = watch_job(client, id);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    auto large = download(id, "large.jpg");
    auto info = probe(large.string());
    // 400x300 stored, displayed rotated: 300x400.
    EXPECT_EQ(info["streams"][0]["width"], 300);
    EXPECT_EQ(info["streams"][0]["height"], 400);
    const std::string bytes = read_file(large);
    EXPECT_EQ(bytes.find("Exif"), std::string::npos) << "metadata stripped";
}

TEST_F(Worker, AudioTranscodeGivesMp3AndOpus) {
    for (const auto& [format, codec] :
         std::vector<std::pair<std::string, std::string>>{{"mp3", "mp3"}, {"ogg", "opus"}}) {
        const auto id = create({{"type", "audio.transcode"},
                                {"params", R"({"format":")" + format + R"("})"},
                                {"file", "", media::wav()}});
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
        auto info = probe(download(id, "audio." + format).string());
        EXPECT_EQ(info["streams"][0]["codec_name"], codec);
        EXPECT_NEAR(std::stod(info["format"]["duration"].get<std::string>()), 3.0, 0.2);
    }
}

// A voice note recorded in a browser is an audio-only WebM, which libmagic types video/webm; the
// sound track of a real video is taken the same way.
TEST_F(Worker, AudioTranscodeTakesAVoiceNoteInWebmAndTheSoundOfAVideo) {
    for (const auto* input : {&media::voice_webm(), &media::video5s()}) {
        const auto id = create({{"type", "audio.transcode"}, {"file", "", *input}});
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
        auto info = probe(download(id, "audio.mp3").string());
        ASSERT_EQ(info["streams"].size(), 1u) << info.dump();
        EXPECT_EQ(info["streams"][0]["codec_name"], "mp3") << info.dump();
        const double seconds = input == &media::voice_webm() ? 2.0 : 5.0;
        EXPECT_NEAR(std::stod(info["format"]["duration"].get<std::string>()), seconds, 0.2);
    }
}

// An input ffmpeg can make nothing of fails at once (the definition's permanent_errors), with
// ffmpeg's own reason and without the server's storage paths, in its error and in its log.
TEST_F(Worker, AnInputTheConverterCannotUseFailsAtOnceWithItsReason) {
    // The first 4 KiB: ftyp, so typed video/mp4, but no moov.
    const auto truncated = make_file("truncated.mp4", read_file(media::video5s()), 4096);
    struct Case {
        const std::filesystem::path* input;
        std::string params;
        std::string reason;
        bool reason_names_the_input;
    };
    const std::vector<Case> cases = {
        {&truncated, "{}", "Invalid data found when processing input", true},
        {&media::voice_webm(), "{}", "matches no streams", false},  // no video
        // Scaled to a height of 240, a 4000x2 frame is 480000 wide: more than libx264 takes.
        {&media::wide_video(), R"({"height":240})", "invalid width x height", false}};
    const std::string storage = stack.config.storage_root.string();
    for (const auto& c : cases) {
        const auto id =
            create({{"type", "video.transcode"}, {"params", c.params}, {"file", "", *c.input}});
        auto w = watch_job(client, id);
        ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
        EXPECT_EQ(w.job["attempts"], 1) << w.job.dump();
        const std::string error = w.job["error"];
        EXPECT_NE(error.find(c.reason), std::string::npos) << error;
        EXPECT_NE(error.find("not retried"), std::string::npos) << error;
        EXPECT_EQ(error.find(storage), std::string::npos) << error;
        // The attempt's log, which the client may download, names the input relative to the
        // storage root as well.
        auto log = client.get("/api/v1/jobs/" + id + "/logs/attempt-001.log");
        ASSERT_EQ(log.status, 200);
        EXPECT_NE(log.body.find(c.reason), std::string::npos) << log.body;
        if (c.reason_names_the_input) {
            EXPECT_NE(log.body.find("sources/" + id + "/"), std::string::npos) << log.body;
        }
        EXPECT_EQ(log.body.find(storage), std::string::npos) << log.body;
    }
}

// libopus refuses 5.1(side) ("Invalid channel layout") and LAME takes two channels at most: the
// converters downmix to stereo, for audio alone and for a video's sound track.
TEST_F(Worker, SurroundSoundIsDownmixedToStereoInEveryFormat) {
    struct Case {
        std::string type, format, output;
        const std::filesystem::path* input;
    };
    const std::vector<Case> cases = {
        {"audio.transcode", "mp3", "audio.mp3", &media::surround_wav()},
        {"audio.transcode", "ogg", "audio.ogg", &media::surround_wav()},
        {"video.transcode", "webm", "video.webm", &media::surround_video()},
        {"video.transcode", "mp4", "video.mp4", &media::surround_video()}};
    std::vector<std::string> ids;
    for (const auto& c : cases) {
        ids.push_back(create({{"type", c.type},
                              {"params", R"({"format":")" + c.format + R"("})"},
                              {"file", "", *c.input}}));
    }
    for (std::size_t i = 0; i < cases.size(); ++i) {
        auto w = watch_job(client, ids[i]);
        ASSERT_EQ(w.job["status"], "completed") << cases[i].output << " " << w.job.dump();
        auto info = probe(download(ids[i], cases[i].output).string());
        int audio_streams = 0;
        for (const auto& s : info["streams"]) {
            if (s["codec_type"] != "audio") continue;
            ++audio_streams;
            EXPECT_EQ(s["channels"], 2) << cases[i].output << " " << info.dump();
        }
        EXPECT_EQ(audio_streams, 1) << cases[i].output << " " << info.dump();
    }
}

TEST_F(Worker, ProgressLinesReachTheJobWithTheirStep) {
    const auto id = create_json(R"({"type":"test.sleep","params":{"ms":2500}})");
    auto w = watch_job(client, id);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    EXPECT_TRUE(rises(w.progress)) << nlohmann::json(w.progress).dump();
    EXPECT_TRUE(has_intermediate(w.progress)) << nlohmann::json(w.progress).dump();
    EXPECT_NE(std::find(w.steps.begin(), w.steps.end(), "sleeping"), w.steps.end());
    auto out = client.get("/api/v1/jobs/" + id + "/results/out.txt");
    EXPECT_EQ(out.body, "slept 2500 ms\n");
}

TEST_F(Worker, AConverterThatExitsOneFailsWithItsReason) {
    auto w = watch_job(client, create_json(R"({"type":"test.fail"})"));
    ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
    const std::string error = w.job["error"];
    EXPECT_NE(error.find("exit status 1"), std::string::npos) << error;
    EXPECT_NE(error.find("failing on purpose"), std::string::npos) << error;
    EXPECT_TRUE(w.job["results"].empty());
}

TEST_F(Worker, OutputThatIsNotUtf8IsRecordedWithReplacementCharacters) {
    // MariaDB refuses invalid UTF-8 in a text column: unsanitised, the failure could not be
    // recorded, and the job stayed running while its worker retried the write for ever.
    auto w = watch_job(client, create_json(R"({"type":"test.garble"})"));
    ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
    const std::string error = w.job["error"];
    EXPECT_NE(error.find("caf\u00e9 \ufffd\ufffd broken \ufffd"), std::string::npos) << error;
    EXPECT_NE(std::find(w.steps.begin(), w.steps.end(), "st\ufffdep"), w.steps.end())
        << nlohmann::json(w.steps).dump();
    // The worker records what comes next as before.
    auto next = watch_job(client, create_json(R"({"type":"test.fail"})"));
    EXPECT_EQ(next.job["status"], "failed") << next.job.dump();
}

TEST_F(Worker, AConverterThatRunsPastItsTimeoutFailsWithTimedOut) {
    const auto started = std::chrono::steady_clock::now();
    auto w = watch_job(client, create_json(R"({"type":"test.timeout"})"));
    ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
    EXPECT_NE(w.job["error"].get<std::string>().find("timed out"), std::string::npos);
    // 1 s timeout: killed long before the 30 s the program wanted.
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
}

TEST_F(Worker, AConverterThatWritesNoOutputFails) {
    auto w = watch_job(client, create_json(R"({"type":"test.nooutput"})"));
    ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
    EXPECT_NE(w.job["error"].get<std::string>().find("did not produce out.txt"), std::string::npos)
        << w.job.dump();
}

// max_output_bytes: the kernel stops a step that writes past it (SIGXFSZ); the job says which
// limit and is not retried, since the same input would do it again. Under the limit it completes.
TEST_F(Worker, AnOutputOverTheConvertersSizeLimitFailsAtOnceNamingTheLimit) {
    const auto over = create_json(R"({"type":"test.toobig","params":{"blocks":32}})");
    const auto under = create_json(R"({"type":"test.toobig","params":{"blocks":8}})");
    auto w = watch_job(client, over);
    ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
    EXPECT_EQ(w.job["attempts"], 1) << w.job.dump();
    const std::string error = w.job["error"];
    EXPECT_NE(error.find("larger than the limit of 1048576 bytes"), std::string::npos) << error;
    EXPECT_NE(error.find("not retried"), std::string::npos) << error;
    auto fits = watch_job(client, under);
    ASSERT_EQ(fits.job["status"], "completed") << fits.job.dump();
    EXPECT_EQ(fits.job["results"][0]["size"], 8 * 65536);
}

TEST_F(Worker, ABuiltinAndASpawnedProgramBothComplete) {
    for (const char* type : {"test.noop", "test.true"}) {
        auto w = watch_job(client, create_json(std::string(R"({"type":")") + type + R"("})"));
        EXPECT_EQ(w.job["status"], "completed") << type << " " << w.job.dump();
    }
}

}  // namespace
}  // namespace kiln::test
