#include "core/storage/file_name.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

namespace kiln::storage {
namespace {

// An extension longer than this is not worth keeping when a name has to be shortened.
constexpr std::size_t max_extension_bytes = 16;

struct Decoded {
    char32_t code_point = 0;
    std::size_t length = 1;  // bytes consumed; 1 for an invalid byte
    bool valid = false;
};

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Strict UTF-8 (Unicode 15, table 3-7): no overlong forms, no surrogates, nothing above
// U+10FFFF. An invalid sequence consumes one byte so decoding resynchronises on the next.
Decoded decode_utf8(std::string_view s, std::size_t i) {
    const auto byte = [&](std::size_t k) -> unsigned char {
        return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0;
    };
    const unsigned char b0 = byte(0);
    if (b0 < 0x80) return {b0, 1, true};

    std::size_t length = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    char32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        length = 2;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        length = 3;
        cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;  // overlong
        if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        length = 4;
        cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;  // overlong
        if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
        return {};
    }
    if (i + length > s.size()) return {};
    for (std::size_t k = 1; k < length; ++k) {
        const unsigned char b = byte(k);
        if (k == 1 ? (b < lo || b > hi) : !is_continuation(b)) return {};
        cp = (cp << 6) | (b & 0x3F);
    }
    return {cp, length, true};
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// C0, DEL and C1.
bool is_control(char32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

bool is_space(char32_t cp) {
    return cp == ' ' || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_safe_ascii(char32_t cp) {
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
           cp == '.' || cp == '_' || cp == '-';
}

// "Non-ASCII letter" without Unicode tables: everything outside the blocks of punctuation,
// symbols, spaces, invisible format characters (bidi overrides that disguise "gpj.exe", zero
// width joiners), look-alike separators (fullwidth and division slashes), private use and
// noncharacters. Letters, digits and combining marks of every script stay readable.
bool is_kept_non_ascii(char32_t cp) {
    struct Range {
        char32_t first;
        char32_t last;
    };
    static constexpr std::array<Range, 36> replaced{{
        {0x00A0, 0x00BF},     // Latin-1 punctuation and symbols, NBSP, soft hyphen
        {0x00D7, 0x00D7},     // multiplication sign
        {0x00F7, 0x00F7},     // division sign
        {0x034F, 0x034F},     // combining grapheme joiner
        {0x0600, 0x0605},     // Arabic number signs (format)
        {0x061C, 0x061C},     // Arabic letter mark
        {0x06DD, 0x06DD},     // Arabic end of ayah
        {0x070F, 0x070F},     // Syriac abbreviation mark
        {0x0890, 0x0891},     // Arabic pound/piastre marks above
        {0x08E2, 0x08E2},     // Arabic disputed end of ayah
        {0x115F, 0x1160},     // Hangul fillers
        {0x1680, 0x1680},     // Ogham space mark
        {0x17B4, 0x17B5},     // Khmer inherent vowels (invisible)
        {0x180B, 0x180F},     // Mongolian variation selectors, vowel separator
        {0x2000, 0x2BFF},     // spaces, bidi controls, punctuation, symbols, arrows, math, shapes
        {0x2E00, 0x2E7F},     // supplemental punctuation
        {0x3000, 0x303F},     // CJK symbols and punctuation, ideographic space
        {0x3164, 0x3164},     // Hangul filler
        {0xD800, 0xF8FF},     // surrogates, private use
        {0xFDD0, 0xFDEF},     // noncharacters
        {0xFE00, 0xFE6F},     // variation selectors, vertical and small forms
        {0xFEFF, 0xFEFF},     // byte order mark / zero width no-break space
        {0xFF00, 0xFF0F},     // fullwidth punctuation, fullwidth solidus
        {0xFF1A, 0xFF20},     // fullwidth punctuation
        {0xFF3B, 0xFF40},     // fullwidth reverse solidus, brackets
        {0xFF5B, 0xFF65},     // fullwidth and halfwidth punctuation
        {0xFFA0, 0xFFA0},     // halfwidth Hangul filler
        {0xFFF0, 0xFFFF},     // specials, replacement character
        {0x110BD, 0x110BD},   // Kaithi number sign (format)
        {0x110CD, 0x110CD},   // Kaithi number sign above (format)
        {0x13430, 0x1343F},   // Egyptian hieroglyph format controls
        {0x1BCA0, 0x1BCA3},   // shorthand format controls
        {0x1D173, 0x1D17A},   // musical symbol format controls
        {0x1F000, 0x1FBFF},   // emoji, pictographs and other symbols
        {0xE0000, 0xE0FFF},   // tags, variation selectors supplement
        {0xF0000, 0x10FFFF},  // supplementary private use
    }};
    if ((cp & 0xFFFE) == 0xFFFE) return false;  // noncharacter at the end of every plane
    return std::none_of(replaced.begin(), replaced.end(),
                        [cp](const Range& r) { return cp >= r.first && cp <= r.last; });
}

// Largest prefix of valid UTF-8 `s` that fits in `max_bytes` and ends on a character boundary.
std::string_view cut_utf8(std::string_view s, std::size_t max_bytes) {
    if (s.size() <= max_bytes) return s;
    std::size_t end = max_bytes;
    while (end > 0 && is_continuation(static_cast<unsigned char>(s[end]))) --end;
    return s.substr(0, end);
}

// The extension worth keeping (".png"), or npos: a last '.' that is not the first character,
// followed by at least one byte, at most max_extension_bytes in all.
std::size_t extension_start(std::string_view name) {
    const auto dot = name.rfind('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == name.size() ||
        name.size() - dot > max_extension_bytes) {
        return std::string_view::npos;
    }
    return dot;
}

bool is_windows_reserved(std::string_view name) {
    std::string stem(name.substr(0, name.find('.')));
    std::transform(stem.begin(), stem.end(), stem.begin(), [](char c) {
        return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    });
    if (stem == "CON" || stem == "PRN" || stem == "AUX" || stem == "NUL") return true;
    return stem.size() == 4 && (stem.starts_with("COM") || stem.starts_with("LPT")) &&
           stem[3] >= '1' && stem[3] <= '9';
}

void strip_trailing_dots(std::string& s) {
    while (!s.empty() && s.back() == '.') s.pop_back();
}

// Empty when nothing safe is left.
std::string sanitize(std::string_view original) {
    const auto separator = original.find_last_of("/\\");
    if (separator != std::string_view::npos) original.remove_prefix(separator + 1);

    std::vector<char32_t> chars;
    chars.reserve(original.size());
    for (std::size_t i = 0; i < original.size();) {
        const Decoded d = decode_utf8(original, i);
        i += d.length;
        if (d.valid && !is_control(d.code_point)) chars.push_back(d.code_point);
    }

    // Leading dots hide files (and make "." and ".."); surrounding spaces are invisible.
    const auto edge = [](char32_t cp) { return cp == '.' || is_space(cp); };
    const auto first = std::find_if_not(chars.begin(), chars.end(), edge);
    auto last = chars.end();
    while (last != first && edge(*(last - 1))) --last;

    std::string out;
    out.reserve(original.size());
    for (auto it = first; it != last; ++it) {
        const char32_t cp = *it;
        if (cp < 0x80) {
            out += is_safe_ascii(cp) ? static_cast<char>(cp) : '_';
        } else if (is_kept_non_ascii(cp)) {
            append_utf8(out, cp);
        } else {
            out += '_';
        }
    }
    // A leading '-' would read as an option to a converter program given a relative path.
    if (!out.empty() && out.front() == '-') out.front() = '_';
    if (is_windows_reserved(out)) out.insert(0, 1, '_');

    if (out.size() > max_file_name_bytes) {
        const auto ext = extension_start(out);
        if (ext != std::string::npos) {
            const std::string extension = out.substr(ext);
            std::string stem(cut_utf8(std::string_view(out).substr(0, ext),
                                      max_file_name_bytes - extension.size()));
            out = stem + extension;
        } else {
            out = std::string(cut_utf8(out, max_file_name_bytes));
            strip_trailing_dots(out);
        }
    }
    return out;
}

}  // namespace

std::string to_valid_utf8(std::string_view text, std::size_t max_bytes) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        const Decoded d = decode_utf8(text, i);
        append_utf8(out, d.valid && d.code_point != 0 ? d.code_point : char32_t{0xFFFD});
        i += d.length;
        if (out.size() > max_bytes) break;
    }
    return std::string(cut_utf8(out, max_bytes));
}

std::string sanitize_file_name(std::string_view original, std::string_view fallback) {
    std::string name = sanitize(original);
    if (name.empty()) name = sanitize(fallback);
    if (name.empty()) name = "file";
    return name;
}

std::string unique_file_name(const std::string& name, std::set<std::string>& taken) {
    const std::string base = name.empty() ? std::string("file") : name;
    if (taken.insert(base).second) return base;

    const auto ext = extension_start(base);
    const std::string_view stem = std::string_view(base).substr(0, ext);
    const std::string_view extension =
        ext == std::string::npos ? std::string_view() : std::string_view(base).substr(ext);
    for (std::size_t n = 2;; ++n) {
        const std::string suffix = "-" + std::to_string(n);
        const std::size_t room = max_file_name_bytes > suffix.size() + extension.size()
                                     ? max_file_name_bytes - suffix.size() - extension.size()
                                     : 0;
        std::string candidate(cut_utf8(stem, room));
        candidate += suffix;
        candidate += extension;
        if (taken.insert(candidate).second) return candidate;
    }
}

}  // namespace kiln::storage
