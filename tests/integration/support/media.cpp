#include "tests/integration/support/media.hpp"

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/integration/support/stack.hpp"

namespace kiln::test::media {
namespace {

// ffmpeg -f lavfi -i SOURCE [extra...] OUT, into the scratch directory.
std::filesystem::path generate(const std::string& name, const std::vector<std::string>& inputs,
                               const std::vector<std::string>& options) {
    std::filesystem::path out = scratch_dir() / name;
    std::vector<std::string> argv = {"ffmpeg", "-nostdin", "-loglevel", "error", "-y"};
    for (const auto& in : inputs) {
        argv.insert(argv.end(), {"-f", "lavfi", "-i", in});
    }
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(out.string());
    run_command(argv);
    return out;
}

// `seconds` of 1280x720 H.264 test pattern with an AAC 440 Hz tone.
std::filesystem::path tone_video(const std::string& name, int seconds) {
    return generate(name, {"testsrc=size=1280x720:rate=25", "sine=frequency=440:sample_rate=48000"},
                    {"-t", std::to_string(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                     "-pix_fmt", "yuv420p", "-c:a", "aac"});
}

// small_png() written as HEIF by vips, with its extra save options.
std::filesystem::path heif_of_small_png(const std::string& name,
                                        const std::vector<std::string>& options) {
    const auto out = scratch_dir() / name;
    std::vector<std::string> argv = {"vips", "heifsave", small_png().string(), out.string()};
    argv.insert(argv.end(), options.begin(), options.end());
    run_command(argv);
    return out;
}

}  // namespace

const std::filesystem::path& png() {
    static const auto p =
        generate("pattern.png", {"testsrc=size=64x48:rate=1"}, {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& jpeg() {
    static const auto p =
        generate("pattern.jpg", {"testsrc=size=64x48:rate=1"}, {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& mp4() {
    static const auto p = generate("clip.mp4", {"testsrc=size=160x120:rate=10"},
                                   {"-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"});
    return p;
}
const std::filesystem::path& video5s() {
    static const auto p = tone_video("five-seconds.mp4", 5);
    return p;
}
const std::filesystem::path& video20s() {
    static const auto p = tone_video("twenty-seconds.mp4", 20);
    return p;
}
const std::filesystem::path& short_video() {
    static const auto p = generate("short.mp4", {"testsrc=size=320x240:rate=25"},
                                   {"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"});
    return p;
}
const std::filesystem::path& odd_sized_video() {
    static const auto p = generate("odd-sized.mp4", {"testsrc=size=321x241:rate=25"},
                                   {"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv444p"});
    return p;
}
const std::filesystem::path& gap_video() {
    static const auto p = generate("gap.mkv", {"testsrc=size=64x48:rate=25"},
                                   {"-frames:v", "2", "-vf", "setpts=N*36000/TB", "-fps_mode",
                                    "passthrough", "-c:v", "libx264"});
    return p;
}
const std::filesystem::path& wide_video() {
    static const auto p = generate("wide.mp4", {"testsrc=size=4000x2:rate=25"},
                                   {"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"});
    return p;
}
const std::filesystem::path& heic() {
    static const auto p = heif_of_small_png("pattern.heic", {});
    return p;
}
const std::filesystem::path& avif() {
    static const auto p = heif_of_small_png("pattern.avif", {"--compression", "av1"});
    return p;
}
const std::filesystem::path& transparent_png() {
    static const auto p = generate("transparent.png", {"color=c=black@0.0:s=300x200,format=rgba"},
                                   {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& big_png() {
    static const auto p =
        generate("big.png", {"testsrc=size=2000x1500:rate=1"}, {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& small_png() {
    static const auto p =
        generate("small.png", {"testsrc=size=400x300:rate=1"}, {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& wav() {
    static const auto p =
        generate("tone.wav", {"sine=frequency=440:sample_rate=44100"}, {"-t", "3"});
    return p;
}

constexpr const char* surround_pan = "pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0";

const std::filesystem::path& surround_wav() {
    static const auto p = generate("surround.wav", {"sine=frequency=440:sample_rate=48000"},
                                   {"-af", surround_pan, "-t", "2"});
    return p;
}

const std::filesystem::path& live_webm() {
    static const auto p = generate("live.webm", {"testsrc=size=320x240:rate=25"},
                                   {"-t", "1", "-c:v", "libvpx", "-live", "1"});
    return p;
}

const std::filesystem::path& voice_webm() {
    static const auto p = generate("voice.webm", {"sine=frequency=440:sample_rate=48000"},
                                   {"-t", "2", "-c:a", "libopus"});
    return p;
}

const std::filesystem::path& surround_video() {
    static const auto p = generate(
        "surround.mp4", {"testsrc=size=320x240:rate=25", "sine=frequency=440:sample_rate=48000"},
        {"-filter_complex", std::string("[1:a]") + surround_pan + "[a]", "-map", "0:v", "-map",
         "[a]", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "ac3"});
    return p;
}

const std::filesystem::path& rotated_jpeg() {
    static const auto p = [] {
        auto plain = generate("upright.jpg", {"testsrc=size=400x300:rate=1"}, {"-frames:v", "1"});
        std::ifstream in(plain, std::ios::binary);
        std::string jpeg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        // APP1 "Exif": a little-endian TIFF header and one IFD entry, Orientation (0x0112),
        // SHORT, count 1, value 6.
        const std::string tiff("II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0",
                               26);
        const std::string payload = std::string("Exif\0\0", 6) + tiff;
        const std::size_t length = payload.size() + 2;
        std::string segment = "\xff\xe1";
        segment.push_back(static_cast<char>(length >> 8));
        segment.push_back(static_cast<char>(length & 0xff));
        segment += payload;
        auto out = scratch_dir() / "rotated.jpg";
        std::ofstream(out, std::ios::binary) << jpeg.substr(0, 2) << segment << jpeg.substr(2);
        return out;
    }();
    return p;
}

}  // namespace kiln::test::media
