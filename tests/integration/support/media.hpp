#pragma once
// Media generated at test time with ffmpeg's lavfi sources, once per test process.

#include <filesystem>

namespace kiln::test {

struct Media {
    std::filesystem::path png;   // 64x48 test pattern
    std::filesystem::path jpeg;  // 64x48 test pattern
    std::filesystem::path mp4;   // 2 s 160x120 H.264 test video
    static const Media& get();
};

}  // namespace kiln::test
