#pragma once
// Safe file names for stored uploads: what a client sends is kept as metadata only.

#include <set>
#include <string>
#include <string_view>

namespace kiln::storage {

inline constexpr std::size_t max_file_name_bytes = 128;

// A name that is safe as a single path component: the last component of `original` (both '/'
// and '\\' separate), control characters, NUL and bytes invalid in UTF-8 dropped, characters
// other than [A-Za-z0-9._-] and non-ASCII letters replaced by '_', no leading dots or spaces,
// no leading '-' (it becomes '_'), bounded to max_file_name_bytes (cut on a UTF-8 boundary,
// extension kept where it fits).
// Never empty, never "." or "..": falls back to `fallback` ("file" by default).
std::string sanitize_file_name(std::string_view original, std::string_view fallback = "file");

// `text` as valid UTF-8 (each invalid byte becomes U+FFFD, NUL too), cut to at most `max_bytes`
// on a character boundary: how an original name is kept as metadata in a utf8mb4 column.
std::string to_valid_utf8(std::string_view text, std::size_t max_bytes);

// `name`, or name-2.ext, name-3.ext, ... the first one not in `taken`; inserts it into `taken`.
std::string unique_file_name(const std::string& name, std::set<std::string>& taken);

}  // namespace kiln::storage
