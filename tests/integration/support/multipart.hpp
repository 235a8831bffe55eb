#pragma once
// multipart/form-data bodies written by hand, byte for byte: for requests that go to kiln-api
// over raw FastCGI, or that must be malformed in exact ways (curl would fix them).

#include <string>
#include <string_view>

namespace kiln::test::multipart {

inline constexpr std::string_view boundary = "kilnB0undary";

// "multipart/form-data; boundary=kilnB0undary"
std::string content_type();

// A form field: delimiter, headers, value and the CRLF that ends it.
std::string field(const std::string& name, const std::string& value);

// A file part's delimiter and headers: `disposition_tail` follows `name="file"` verbatim (e.g.
// `; filename="a.png"`); the data and its CRLF come next.
std::string file_head(const std::string& disposition_tail,
                      const std::string& type = "application/octet-stream");

// The closing delimiter.
std::string closing();

// The body most creates send: the `type` field, then `data` as the file `file_name`.
std::string upload(const std::string& type, const std::string& file_name, const std::string& data);

}  // namespace kiln::test::multipart
