#pragma once
// Media generated at test time with ffmpeg's lavfi sources, each made on first use (ctest runs
// every test in its own process, so a test pays only for what it uses).

#include <filesystem>

namespace kiln::test::media {

const std::filesystem::path& png();      // 64x48 test pattern
const std::filesystem::path& jpeg();     // 64x48 test pattern
const std::filesystem::path& mp4();      // 2 s 160x120 H.264
const std::filesystem::path& video5s();  // 5 s 1280x720 H.264 + AAC tone
// 20 s 1280x720 H.264 + AAC tone: its conversion lasts long enough to report progress between
// 0 and 100 on a fast machine (a 5 s clip's webm encode took about a second).
const std::filesystem::path& video20s();
const std::filesystem::path& short_video();  // 1 s 320x240 H.264
// 1 s 320x240 VP8 WebM written as a live stream, as a browser's MediaRecorder writes it: its
// header declares no duration.
const std::filesystem::path& live_webm();
// 1 s 321x241 H.264 4:4:4: odd dimensions, which 4:2:0 encoders refuse.
const std::filesystem::path& odd_sized_video();
// Two 64x48 H.264 frames ten hours apart in Matroska: a timestamp gap, as a broken or hostile
// file has.
const std::filesystem::path& gap_video();
// 1 s 4000x2 H.264: a frame whose aspect ratio makes any scaled height absurdly wide.
const std::filesystem::path& wide_video();
const std::filesystem::path& big_png();    // 2000x1500 test pattern
const std::filesystem::path& small_png();  // 400x300 test pattern
// small_png() as HEIC (how iPhones store photos) and as AVIF, written by vips.
const std::filesystem::path& heic();
const std::filesystem::path& avif();
// 300x200, fully transparent black: flattened onto black it would look black.
const std::filesystem::path& transparent_png();
const std::filesystem::path& wav();  // 3 s 440 Hz tone
// 2 s 440 Hz tone in 5.1(side), the layout libopus refuses.
const std::filesystem::path& surround_wav();
// 2 s Opus in WebM without video, as browsers record voice notes (libmagic: video/webm).
const std::filesystem::path& voice_webm();
// 2 s 320x240 H.264 with AC-3 5.1(side) audio, as in many films.
const std::filesystem::path& surround_video();
// 400x300 JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6).
const std::filesystem::path& rotated_jpeg();

}  // namespace kiln::test::media
