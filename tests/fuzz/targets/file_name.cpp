// Fuzzes sanitize_file_name and unique_file_name.
//
// Input: the client's file name, any bytes (it comes from a multipart filename or filename*
// parameter, so NUL, CR, invalid UTF-8, separators and bidi controls are all possible).
//
// Every name either function returns must be safe as one path component: non-empty, not "." or
// "..", no leading '.' or '-', no '/', '\\', NUL or other control character, valid UTF-8, only
// [A-Za-z0-9._-] among ASCII, no invisible or look-alike characters from the replaced blocks,
// no Windows device name, at most max_file_name_bytes. Sanitising is idempotent.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "core/storage/file_name.hpp"

namespace {

using kiln::storage::max_file_name_bytes;
using kiln::storage::sanitize_file_name;
using kiln::storage::unique_file_name;

[[noreturn]] void violated(std::string_view name, const char* what) {
    std::fprintf(stderr, "file name fuzz: invariant violated: %s: \"", what);
    for (unsigned char c : name) {
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            std::fputc(c, stderr);
        } else {
            std::fprintf(stderr, "\\x%02x", c);
        }
    }
    std::fprintf(stderr, "\"\n");
    std::abort();
}

// A strict UTF-8 decoder written independently of the one under test: the next code point, or
// -1 for an invalid sequence.
long next_code_point(std::string_view s, std::size_t& i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b0 = b(i);
    std::size_t length = 0;
    long cp = 0;
    long min = 0;
    if (b0 < 0x80) {
        ++i;
        return b0;
    } else if ((b0 & 0xE0) == 0xC0) {
        length = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        length = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        length = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (s.size() - i < length) return -1;
    for (std::size_t k = 1; k < length; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (b(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    i += length;
    return cp;
}

bool is_device_name(std::string_view name) {
    std::string stem(name.substr(0, name.find('.')));
    for (char& c : stem) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    if (stem == "CON" || stem == "PRN" || stem == "AUX" || stem == "NUL") return true;
    return stem.size() == 4 && (stem.starts_with("COM") || stem.starts_with("LPT")) &&
           stem[3] >= '1' && stem[3] <= '9';
}

// Characters that hide or fake what a name looks like: zero-width and bidi controls, the BOM,
// look-alike slashes and dots, private use.
bool is_deceptive(long cp) {
    return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF || cp == 0x2044 || cp == 0x2215 ||
           cp == 0x29F8 || cp == 0xFF0E || cp == 0xFF0F || cp == 0xFF3C || cp == 0x2024 ||
           (cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000 || cp == 0x00AD || cp == 0x061C ||
           cp == 0x180E || cp == 0xFFFD;
}

void check_safe(std::string_view name) {
    if (name.empty()) violated(name, "empty");
    if (name == "." || name == "..") violated(name, "dot name");
    if (name.front() == '.') violated(name, "leading dot");
    if (name.front() == '-') violated(name, "leading dash");
    if (name.size() > max_file_name_bytes) violated(name, "longer than max_file_name_bytes");
    if (is_device_name(name)) violated(name, "Windows device name");
    for (std::size_t i = 0; i < name.size();) {
        const long cp = next_code_point(name, i);
        if (cp < 0) violated(name, "invalid UTF-8");
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) violated(name, "control character");
        if (cp < 0x80) {
            const bool safe = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
                              (cp >= '0' && cp <= '9') || cp == '.' || cp == '_' || cp == '-';
            if (!safe) violated(name, "ASCII character outside [A-Za-z0-9._-]");
        } else if (is_deceptive(cp)) {
            violated(name, "invisible or look-alike character");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view original(reinterpret_cast<const char*>(data), size);

    const std::string name = sanitize_file_name(original);
    check_safe(name);
    if (sanitize_file_name(name) != name) violated(name, "sanitising is not idempotent");

    // The input as the fallback of a name with nothing safe in it.
    const std::string fallback = sanitize_file_name("../..", original);
    check_safe(fallback);
    if (fallback != sanitize_file_name(original, "file")) {
        violated(fallback, "the fallback is not sanitised like a name");
    }

    // Several uploads with the same name in one job.
    std::set<std::string> taken;
    for (int i = 0; i < 12; ++i) {
        const std::size_t before = taken.size();
        const std::string unique = unique_file_name(name, taken);
        check_safe(unique);
        if (taken.size() != before + 1 || !taken.contains(unique)) {
            violated(unique, "unique_file_name returned a taken name or did not record it");
        }
        if (sanitize_file_name(unique) != unique) violated(unique, "unique name is not sanitised");
    }
    return 0;
}
