#pragma once
// A small libcurl client for the integration tests: real HTTP to the nginx in front of kiln-api.

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::test {

struct HttpResult {
    long status = 0;
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;

  private:
    mutable std::optional<nlohmann::json> parsed_;

  public:
    // The body parsed as JSON (discarded value when it is not JSON), parsed once and kept, so
    // references into it live as long as this result.
    [[nodiscard]] const nlohmann::json& json() const;
    [[nodiscard]] std::string header(const std::string& lower_name) const;
    // The problem's "code" member, "" when the body is not a problem document.
    [[nodiscard]] std::string code() const;
};

struct Part {
    Part(std::string n, std::string v) : name(std::move(n)), value(std::move(v)) {}
    // A file part: `v` is ignored (kept so call sites read name, value, file, filename, type).
    Part(std::string n, std::string v, std::filesystem::path f,
         std::optional<std::string> fname = std::nullopt,
         std::optional<std::string> type = std::nullopt)
        : name(std::move(n)),
          value(std::move(v)),
          file(std::move(f)),
          filename(std::move(fname)),
          content_type(std::move(type)) {}

    std::string name;
    std::string value;                          // for a plain field
    std::optional<std::filesystem::path> file;  // for a file part
    std::optional<std::string> filename;        // overrides the file's name
    std::optional<std::string> content_type;
};

class Client {
  public:
    Client(std::string base_url, std::string token)
        : base_(std::move(base_url)), token_(std::move(token)) {}

    HttpResult get(const std::string& path) const;
    HttpResult post_json(const std::string& path, const std::string& body) const;
    HttpResult post_multipart(const std::string& path, const std::vector<Part>& parts) const;
    // Any method, a raw body and extra headers ("Name: value").
    HttpResult send(const std::string& method, const std::string& path, const std::string& body,
                    const std::vector<std::string>& headers = {}) const;

    const std::string& base() const { return base_; }
    Client with_token(std::string token) const { return Client(base_, std::move(token)); }

  private:
    std::string base_;
    std::string token_;
};

}  // namespace kiln::test
