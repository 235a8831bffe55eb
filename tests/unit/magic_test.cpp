#include "core/magic/detector.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace kiln::magic {
namespace {

// The PNG signature and the start of an IHDR chunk: enough for libmagic. Sized from the arrays,
// since both hold NUL bytes.
constexpr char png_bytes[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0";
constexpr char jpeg_bytes[] = "\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0";
const std::string png_head(png_bytes, sizeof png_bytes - 1);
const std::string jpeg_head(jpeg_bytes, sizeof jpeg_bytes - 1);

std::shared_ptr<const Database> database() {
    auto db = Database::load();
    if (!db) throw std::runtime_error(db.error().describe());
    return *db;
}

TEST(MagicDetector, TypesBytesBySignatureNotByName) {
    auto detector = Detector::open(database());
    ASSERT_TRUE(detector.has_value()) << detector.error().describe();
    EXPECT_EQ((*detector)->mime_type(png_head), "image/png");
    EXPECT_EQ((*detector)->mime_type(jpeg_head), "image/jpeg");
    EXPECT_EQ((*detector)->mime_type("plain words\n"), "text/plain");
}

// Every detector reads the one mapping: a cookie that loaded the database itself mapped its own
// copy, and RSS counted the touched pages of each (31 MiB in kiln-api after varied uploads).
TEST(MagicDetector, AllDetectorsShareOneMappingOfTheDatabase) {
    auto db = database();
    std::vector<std::unique_ptr<Detector>> detectors;
    for (int i = 0; i < 16; ++i) {
        auto d = Detector::open(db);
        ASSERT_TRUE(d.has_value()) << d.error().describe();
        EXPECT_EQ((*d)->mime_type(png_head), "image/png");
        detectors.push_back(std::move(*d));
    }
    const std::string file = std::filesystem::canonical(db->file()).string();
    std::ifstream maps("/proc/self/maps");
    int mappings = 0;
    for (std::string line; std::getline(maps, line);) {
        if (line.size() >= file.size() && line.ends_with(file)) ++mappings;
    }
    EXPECT_EQ(mappings, 1) << file;
}

TEST(MagicDetector, DetectorsOnOneDatabaseWorkFromSeveralThreads) {
    auto db = database();
    std::vector<std::thread> threads;
    std::vector<int> wrong(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            auto d = Detector::open(db);
            if (!d) {
                wrong[t] = -1;
                return;
            }
            for (int i = 0; i < 500; ++i) {
                const bool png = (i + t) % 2 == 0;
                if ((*d)->mime_type(png ? png_head : jpeg_head) !=
                    (png ? "image/png" : "image/jpeg"))
                    ++wrong[t];
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(wrong, std::vector<int>(4, 0));
}

TEST(MagicDatabase, AMissingOrInvalidFileIsAnError) {
    EXPECT_FALSE(Database::load("/nonexistent/magic.mgc").has_value());
    const auto junk = std::filesystem::temp_directory_path() / "kiln-junk.mgc";
    std::ofstream(junk) << "not a compiled magic file";
    auto db = Database::load(junk);
    ASSERT_TRUE(db.has_value()) << db.error().describe();  // mapping works; libmagic refuses it
    auto d = Detector::open(*db);
    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().code, ErrorCode::config);
    std::filesystem::remove(junk);
}

}  // namespace
}  // namespace kiln::magic
