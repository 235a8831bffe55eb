#include "tests/integration/support/multipart.hpp"

namespace kiln::test::multipart {

std::string content_type() { return "multipart/form-data; boundary=" + std::string(boundary); }

std::string field(const std::string& name, const std::string& value) {
    return "--" + std::string(boundary) + "\r\nContent-Disposition: form-data; name=\"" + name +
           "\"\r\n\r\n" + value + "\r\n";
}

std::string file_head(const std::string& disposition_tail, const std::string& type) {
    return "--" + std::string(boundary) + "\r\nContent-Disposition: form-data; name=\"file\"" +
           disposition_tail + "\r\nContent-Type: " + type + "\r\n\r\n";
}

std::string closing() { return "--" + std::string(boundary) + "--\r\n"; }

std::string upload(const std::string& type, const std::string& file_name, const std::string& data) {
    return field("type", type) + file_head("; filename=\"" + file_name + "\"") + data + "\r\n" +
           closing();
}

}  // namespace kiln::test::multipart
