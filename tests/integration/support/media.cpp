#include "tests/integration/support/media.hpp"

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

}  // namespace

const std::filesystem::path& png() {
    static const auto p = generate("pattern.png", {"testsrc=size=64x48:rate=1"}, {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& jpeg() {
    static const auto p = generate("pattern.jpg", {"testsrc=size=64x48:rate=1"}, {"-frames:v", "1"});
    return p;
}
const std::filesystem::path& mp4() {
    static const auto p = generate("clip.mp4", {"testsrc=size=160x120:rate=10"},
                                   {"-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"});
    return p;
}
const std::filesystem::path& video5s() {
    static const auto p = generate(
        "five-seconds.mp4",
        {"testsrc=size=1280x720:rate=25", "sine=frequency=440:sample_rate=48000"},
        {"-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a",
         "aac"});
    return p;
}
const std::filesystem::path& short_video() {
    static const auto p = generate("short.mp4", {"testsrc=size=320x240:rate=25"},
                                   {"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"});
    return p;
}
const std::filesystem::path& big_png() {
    static const auto p = generate("big.png", {"testsrc=size=2000x1500:rate=1"}, {"-frames:v", "1"});
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

}  // namespace kiln::test::media
