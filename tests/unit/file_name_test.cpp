#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <string_view>

#include "core/storage/file_name.hpp"

namespace kiln::storage {
namespace {

using namespace std::string_literals;

// Strict UTF-8 check, independent of the implementation under test.
bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        char32_t cp = 0;
        if (b < 0x80) {
            ++i;
            continue;
        }
        if ((b & 0xE0) == 0xC0) {
            n = 2;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (c & 0x3F);
        }
        const char32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n;
    }
    return true;
}

// Every promise of sanitize_file_name, checked on any output.
::testing::AssertionResult is_safe_name(const std::string& name) {
    if (name.empty()) return ::testing::AssertionFailure() << "empty";
    if (name == "." || name == "..") return ::testing::AssertionFailure() << "dot name";
    if (name.front() == '.') return ::testing::AssertionFailure() << "leading dot: " << name;
    if (name.front() == '-') return ::testing::AssertionFailure() << "leading dash: " << name;
    if (name.size() > max_file_name_bytes) {
        return ::testing::AssertionFailure() << "too long: " << name.size();
    }
    if (!is_valid_utf8(name)) return ::testing::AssertionFailure() << "invalid UTF-8";
    for (std::size_t i = 0; i < name.size(); ++i) {
        const auto b = static_cast<unsigned char>(name[i]);
        if (b < 0x20 || b == 0x7F || name[i] == '/' || name[i] == '\\') {
            return ::testing::AssertionFailure() << "byte " << int(b) << " at " << i;
        }
        // C1 controls are U+0080..U+009F, encoded C2 80..C2 9F.
        if (b == 0xC2 && i + 1 < name.size() && static_cast<unsigned char>(name[i + 1]) <= 0x9F) {
            return ::testing::AssertionFailure() << "C1 control at " << i;
        }
    }
    return ::testing::AssertionSuccess();
}

std::string sanitize(std::string_view original) {
    std::string name = sanitize_file_name(original);
    EXPECT_TRUE(is_safe_name(name)) << "for input of " << original.size() << " bytes";
    return name;
}

// --- sanitize_file_name --------------------------------------------------------------------

TEST(SanitizeFileName, PlainNamesAreKept) {
    EXPECT_EQ(sanitize("photo.jpg"), "photo.jpg");
    EXPECT_EQ(sanitize("My_Video-2024.final.MP4"), "My_Video-2024.final.MP4");
}

TEST(SanitizeFileName, PathTraversalKeepsOnlyTheLastComponent) {
    EXPECT_EQ(sanitize("../../etc/passwd"), "passwd");
    EXPECT_EQ(sanitize("/etc/passwd"), "passwd");
    EXPECT_EQ(sanitize("a/b/../c.png"), "c.png");
}

TEST(SanitizeFileName, BackslashSeparatesComponentsToo) {
    EXPECT_EQ(sanitize("a\\b\\c.png"), "c.png");
    EXPECT_EQ(sanitize("C:\\Users\\eve\\Desktop\\report.pdf"), "report.pdf");
    EXPECT_EQ(sanitize("..\\..\\windows\\win.ini"), "win.ini");
    EXPECT_EQ(sanitize("a/b\\c/d.txt"), "d.txt");
}

TEST(SanitizeFileName, TrailingSeparatorLeavesNothingSoFallbackIsUsed) {
    EXPECT_EQ(sanitize("photos/"), "file");
    EXPECT_EQ(sanitize("/"), "file");
    EXPECT_EQ(sanitize("\\"), "file");
}

TEST(SanitizeFileName, NulBytesAreDropped) {
    EXPECT_EQ(sanitize("evil.php\0.png"s), "evil.php.png");
    EXPECT_EQ(sanitize("\0\0\0"s), "file");
    EXPECT_EQ(sanitize("a\0/b"s), "b");
}

TEST(SanitizeFileName, ControlCharactersAreDropped) {
    EXPECT_EQ(sanitize("a\tb\nc\r.txt"), "abc.txt");
    EXPECT_EQ(sanitize("\x1b[31mred\x1b[0m.txt"), "_31mred_0m.txt");
    EXPECT_EQ(sanitize("del\x7f.txt"), "del.txt");
}

TEST(SanitizeFileName, C1ControlCharactersAreDropped) {
    EXPECT_EQ(sanitize("a\xC2\x80"
                       "b\xC2\x85"
                       "c\xC2\x9B"
                       "d\xC2\x9F.txt"),
              "abcd.txt");
}

TEST(SanitizeFileName, InvalidUtf8BytesAreDropped) {
    EXPECT_EQ(sanitize("caf\xE9.txt"), "caf.txt");  // Latin-1 é
    EXPECT_EQ(sanitize("a\xC0\xAF"
                       "b.txt"),
              "ab.txt");  // overlong '/'
    EXPECT_EQ(sanitize("a\xE0\x80\xAF"
                       "b.txt"),
              "ab.txt");  // 3-byte overlong '/'
    EXPECT_EQ(sanitize("a\xED\xA0\x80"
                       "b.txt"),
              "ab.txt");  // UTF-16 surrogate
    EXPECT_EQ(sanitize("a\xF4\x90\x80\x80"
                       "b.txt"),
              "ab.txt");  // above U+10FFFF
    EXPECT_EQ(sanitize("a\xF8\x88\x80\x80\x80"
                       "b.txt"),
              "ab.txt");  // 5-byte form
    EXPECT_EQ(sanitize("a\xFF\xFE"
                       "b.txt"),
              "ab.txt");
    EXPECT_EQ(sanitize("ab.txt\xE6\x97"), "ab.txt");  // truncated at the end
    EXPECT_EQ(sanitize("\x80\x80\x80"), "file");
}

TEST(SanitizeFileName, OverlongDotsCannotSmuggleATraversal) {
    EXPECT_EQ(sanitize("\xC0\xAE\xC0\xAE"), "file");  // overlong ".."
    EXPECT_EQ(sanitize("\xC0\xAE\xC0\xAE\xC0\xAF"
                       "x"),
              "x");
}

TEST(SanitizeFileName, NonAsciiLettersAreKept) {
    EXPECT_EQ(sanitize("r\xC3\xA9sum\xC3\xA9.pdf"), "r\xC3\xA9sum\xC3\xA9.pdf");  // résumé
    EXPECT_EQ(sanitize("\xE6\x97\xA5\xE6\x9C\xAC.txt"), "\xE6\x97\xA5\xE6\x9C\xAC.txt");  // 日本
    EXPECT_EQ(sanitize("\xD0\xA4\xD0\xBE\xD1\x82\xD0\xBE.jpg"),
              "\xD0\xA4\xD0\xBE\xD1\x82\xD0\xBE.jpg");                    // Фото
    EXPECT_EQ(sanitize("\xF0\xA0\x80\x80.txt"), "\xF0\xA0\x80\x80.txt");  // U+20000
}

TEST(SanitizeFileName, PunctuationAndSpacesBecomeUnderscores) {
    EXPECT_EQ(sanitize("my photo (1).jpg"), "my_photo__1_.jpg");
    EXPECT_EQ(sanitize("a:b*c?d\"e<f>g|h.txt"), "a_b_c_d_e_f_g_h.txt");
    EXPECT_EQ(sanitize("$(rm -rf ~);`id`.png"), "__rm_-rf_____id_.png");
    EXPECT_EQ(sanitize("image.jpg[0]"), "image.jpg_0_");
    EXPECT_EQ(sanitize("a@b%c+d.png"), "a_b_c_d.png");
}

TEST(SanitizeFileName, BidiOverridesAndInvisibleCharactersAreReplaced) {
    // "evil<RLO>gpj.exe" displays as "evilexe.jpg".
    EXPECT_EQ(sanitize("evil\xE2\x80\xAEgpj.exe"), "evil_gpj.exe");
    EXPECT_EQ(sanitize("a\xE2\x80\x8B"
                       "b.txt"),
              "a_b.txt");  // zero width space
    EXPECT_EQ(sanitize("a\xEF\xBB\xBF"
                       "b.txt"),
              "a_b.txt");  // BOM
    EXPECT_EQ(sanitize("a\xC2\xA0"
                       "b.txt"),
              "a_b.txt");  // no-break space
}

TEST(SanitizeFileName, LookAlikeSlashesAreReplaced) {
    EXPECT_EQ(sanitize("a\xEF\xBC\x8F"
                       "b.txt"),
              "a_b.txt");  // fullwidth solidus
    EXPECT_EQ(sanitize("a\xEF\xBC\xBC"
                       "b.txt"),
              "a_b.txt");  // fullwidth reverse solidus
    EXPECT_EQ(sanitize("a\xE2\x88\x95"
                       "b.txt"),
              "a_b.txt");  // division slash
    EXPECT_EQ(sanitize("a\xE2\x81\x84"
                       "b.txt"),
              "a_b.txt");  // fraction slash
}

TEST(SanitizeFileName, EmojiAndPrivateUseAreReplaced) {
    EXPECT_EQ(sanitize("cat\xF0\x9F\x98\xBA.png"), "cat_.png");
    EXPECT_EQ(sanitize("x\xEE\x80\x80.png"), "x_.png");
}

TEST(SanitizeFileName, LeadingDotsAreRemoved) {
    EXPECT_EQ(sanitize(".hidden"), "hidden");
    EXPECT_EQ(sanitize("..hidden.txt"), "hidden.txt");
    EXPECT_EQ(sanitize(". . .bashrc"), "bashrc");
    EXPECT_EQ(sanitize(".htaccess"), "htaccess");
}

TEST(SanitizeFileName, LeadingAndTrailingSpacesAreRemoved) {
    EXPECT_EQ(sanitize("  a b.txt  "), "a_b.txt");
    EXPECT_EQ(sanitize("\xE3\x80\x80name.txt"), "name.txt");  // ideographic space
}

TEST(SanitizeFileName, TrailingDotsAreRemoved) {
    EXPECT_EQ(sanitize("name..."), "name");
    EXPECT_EQ(sanitize("name. ."), "name");
}

TEST(SanitizeFileName, DotNamesAndEmptyFallBack) {
    EXPECT_EQ(sanitize(""), "file");
    EXPECT_EQ(sanitize("."), "file");
    EXPECT_EQ(sanitize(".."), "file");
    EXPECT_EQ(sanitize("..."), "file");
    EXPECT_EQ(sanitize("../.."), "file");
    EXPECT_EQ(sanitize(" "), "file");
}

TEST(SanitizeFileName, CustomFallbackIsUsedAndItselfSanitised) {
    EXPECT_EQ(sanitize_file_name("", "upload.bin"), "upload.bin");
    EXPECT_EQ(sanitize_file_name("..", "../x"), "x");
    EXPECT_EQ(sanitize_file_name("..", ".."), "file");
    EXPECT_EQ(sanitize_file_name("", ""), "file");
}

TEST(SanitizeFileName, LeadingDashCannotReadAsAnOption) {
    EXPECT_EQ(sanitize("-rf"), "_rf");
    EXPECT_EQ(sanitize("--help.mp4"), "_-help.mp4");
    EXPECT_EQ(sanitize("a-b.mp4"), "a-b.mp4");
}

TEST(SanitizeFileName, WindowsDeviceNamesArePrefixed) {
    EXPECT_EQ(sanitize("CON"), "_CON");
    EXPECT_EQ(sanitize("nul.txt"), "_nul.txt");
    EXPECT_EQ(sanitize("com1.tar.gz"), "_com1.tar.gz");
    EXPECT_EQ(sanitize("console.txt"), "console.txt");
    EXPECT_EQ(sanitize("com0.txt"), "com0.txt");
}

TEST(SanitizeFileName, LongNameIsCutKeepingTheExtension) {
    const std::string name = sanitize(std::string(300, 'a') + ".png");
    EXPECT_EQ(name.size(), max_file_name_bytes);
    EXPECT_TRUE(name.ends_with(".png"));
    EXPECT_EQ(name, std::string(max_file_name_bytes - 4, 'a') + ".png");
}

TEST(SanitizeFileName, NameOfExactlyTheLimitIsUnchanged) {
    const std::string original = std::string(max_file_name_bytes - 4, 'b') + ".jpg";
    EXPECT_EQ(sanitize(original), original);
}

TEST(SanitizeFileName, LongMultibyteNameIsCutOnACharacterBoundary) {
    std::string original;
    for (int i = 0; i < 100; ++i) original += "\xC3\xA9";  // é, 2 bytes
    original += ".jpeg";
    const std::string name = sanitize(original);
    EXPECT_LE(name.size(), max_file_name_bytes);
    EXPECT_TRUE(name.ends_with(".jpeg"));
    EXPECT_EQ(name.size(), max_file_name_bytes - 1);  // 123 bytes of stem round down to 122

    std::string cjk;
    for (int i = 0; i < 100; ++i) cjk += "\xE6\x97\xA5";  // 日, 3 bytes
    const std::string cut = sanitize(cjk);
    EXPECT_EQ(cut.size(), 126u);
}

TEST(SanitizeFileName, OverlongExtensionIsNotKept) {
    const std::string name = sanitize(std::string(200, 'a') + "." + std::string(40, 'x'));
    EXPECT_EQ(name, std::string(max_file_name_bytes, 'a'));
}

TEST(SanitizeFileName, LongNameCutBeforeADotHasNoTrailingDot) {
    const std::string name = sanitize(std::string(127, 'a') + ".." + std::string(20, 'b'));
    EXPECT_EQ(name, std::string(127, 'a'));
}

TEST(SanitizeFileName, HugeInputStaysBounded) {
    const std::string name = sanitize(std::string(1 << 20, 'z') + ".mp4");
    EXPECT_EQ(name.size(), max_file_name_bytes);
    EXPECT_TRUE(name.ends_with(".mp4"));
}

TEST(SanitizeFileName, RandomBytesAlwaysGiveASafeName) {
    std::mt19937 random(20240601);
    std::uniform_int_distribution<int> length(0, 300);
    std::uniform_int_distribution<int> byte(0, 255);
    // Bias towards the interesting bytes: separators, dots, controls, UTF-8 lead bytes.
    const std::string interesting = "/\\.\0 -\x7f\x80\xbf\xc0\xc2\xe0\xed\xef\xf0\xf4\xff"s;
    std::uniform_int_distribution<std::size_t> pick(0, interesting.size() - 1);
    for (int round = 0; round < 20000; ++round) {
        std::string input(static_cast<std::size_t>(length(random)), '\0');
        for (char& c : input) {
            c = byte(random) < 96 ? interesting[pick(random)] : static_cast<char>(byte(random));
        }
        const std::string name = sanitize_file_name(input);
        ASSERT_TRUE(is_safe_name(name)) << "round " << round;
        ASSERT_EQ(sanitize_file_name(name), name) << "not idempotent, round " << round;
    }
}

// --- unique_file_name ----------------------------------------------------------------------

TEST(UniqueFileName, FirstUseKeepsTheNameAndRecordsIt) {
    std::set<std::string> taken;
    EXPECT_EQ(unique_file_name("a.png", taken), "a.png");
    EXPECT_EQ(taken, std::set<std::string>{"a.png"});
}

TEST(UniqueFileName, CollisionsGetNumberedBeforeTheExtension) {
    std::set<std::string> taken;
    EXPECT_EQ(unique_file_name("a.png", taken), "a.png");
    EXPECT_EQ(unique_file_name("a.png", taken), "a-2.png");
    EXPECT_EQ(unique_file_name("a.png", taken), "a-3.png");
    EXPECT_EQ(taken.size(), 3u);
}

TEST(UniqueFileName, NumberSkipsNamesAlreadyTaken) {
    std::set<std::string> taken{"a.png", "a-2.png", "a-3.png"};
    EXPECT_EQ(unique_file_name("a.png", taken), "a-4.png");
}

TEST(UniqueFileName, NameWithoutExtensionGetsASuffix) {
    std::set<std::string> taken{"README"};
    EXPECT_EQ(unique_file_name("README", taken), "README-2");
}

TEST(UniqueFileName, OnlyTheLastExtensionIsKeptAfterTheNumber) {
    std::set<std::string> taken{"archive.tar.gz"};
    EXPECT_EQ(unique_file_name("archive.tar.gz", taken), "archive.tar-2.gz");
}

TEST(UniqueFileName, DifferentCaseIsADifferentName) {
    std::set<std::string> taken{"a.png"};
    EXPECT_EQ(unique_file_name("A.png", taken), "A.png");
}

TEST(UniqueFileName, NumberedNameOfAMaximalNameStaysWithinTheLimit) {
    const std::string name = sanitize_file_name(std::string(300, 'n') + ".webm");
    ASSERT_EQ(name.size(), max_file_name_bytes);
    std::set<std::string> taken{name};
    const std::string second = unique_file_name(name, taken);
    EXPECT_EQ(second.size(), max_file_name_bytes);
    EXPECT_TRUE(second.ends_with("-2.webm"));
    for (int i = 3; i <= 120; ++i) {
        const std::string next = unique_file_name(name, taken);
        EXPECT_TRUE(is_safe_name(next));
        EXPECT_TRUE(next.ends_with("-" + std::to_string(i) + ".webm")) << next;
    }
    EXPECT_EQ(taken.size(), 120u);
}

TEST(UniqueFileName, MultibyteStemIsCutOnACharacterBoundary) {
    std::string stem;
    for (int i = 0; i < 41; ++i) stem += "\xE6\x97\xA5";  // 123 bytes
    const std::string name = stem + ".png";               // 127 bytes
    std::set<std::string> taken{name};
    const std::string second = unique_file_name(name, taken);
    EXPECT_TRUE(is_safe_name(second)) << second;
    EXPECT_TRUE(second.ends_with("-2.png"));
}

TEST(UniqueFileName, EmptyNameBecomesFile) {
    std::set<std::string> taken;
    EXPECT_EQ(unique_file_name("", taken), "file");
    EXPECT_EQ(unique_file_name("", taken), "file-2");
}

}  // namespace
}  // namespace kiln::storage

namespace kiln::storage {
namespace {

TEST(OriginalName, InvalidUtf8BecomesReplacementCharactersAndIsCutOnABoundary) {
    EXPECT_EQ(to_valid_utf8("\xff\xfe.png", 1024), "\xEF\xBF\xBD\xEF\xBF\xBD.png");
    EXPECT_EQ(to_valid_utf8("caf\xe9", 1024), "caf\xEF\xBF\xBD");
    EXPECT_EQ(to_valid_utf8(std::string("a\0b", 3), 1024),
              "a\xEF\xBF\xBD"
              "b");
    EXPECT_EQ(to_valid_utf8("caf\xC3\xA9", 1024), "caf\xC3\xA9");
    // 4 bytes allow "caf" but not half of the two-byte é.
    EXPECT_EQ(to_valid_utf8("caf\xC3\xA9", 4), "caf");
}

}  // namespace
}  // namespace kiln::storage
