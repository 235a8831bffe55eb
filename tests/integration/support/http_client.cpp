#include "tests/integration/support/http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace kiln::test {
namespace {

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct MimeDeleter {
    void operator()(curl_mime* m) const { curl_mime_free(m); }
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* out) {
    std::string line(data, size * n);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
        (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
    }
    return size * n;
}

HttpResult perform(CURL* curl, curl_slist* headers) {
    HttpResult result;
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) throw std::runtime_error(std::string("curl: ") + curl_easy_strerror(rc));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
    return result;
}

}  // namespace

const nlohmann::json& HttpResult::json() const {
    if (!parsed_) parsed_ = nlohmann::json::parse(body, nullptr, false);
    return *parsed_;
}

std::string HttpResult::header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
}

std::string HttpResult::code() const {
    const auto& j = json();
    return j.is_object() && j.contains("code") && j["code"].is_string()
               ? j["code"].get<std::string>()
               : "";
}

HttpResult Client::send(const std::string& method, const std::string& path, const std::string& body,
                        const std::vector<std::string>& extra) const {
    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    curl_slist* list = nullptr;
    if (!token_.empty())
        list = curl_slist_append(list, ("Authorization: Bearer " + token_).c_str());
    for (const auto& h : extra) list = curl_slist_append(list, h.c_str());
    std::unique_ptr<curl_slist, SlistDeleter> headers(list);
    std::string url = base_ + path;
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "HEAD") curl_easy_setopt(curl.get(), CURLOPT_NOBODY, 1L);
    if (!body.empty() || method == "POST") {
        curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(body.size()));
    }
    return perform(curl.get(), headers.get());
}

HttpResult Client::get(const std::string& path) const { return send("GET", path, ""); }

HttpResult Client::post_json(const std::string& path, const std::string& body) const {
    return send("POST", path, body, {"Content-Type: application/json"});
}

HttpResult Client::post_multipart(const std::string& path, const std::vector<Part>& parts) const {
    std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
    std::unique_ptr<curl_mime, MimeDeleter> mime(curl_mime_init(curl.get()));
    for (const auto& p : parts) {
        curl_mimepart* part = curl_mime_addpart(mime.get());
        curl_mime_name(part, p.name.c_str());
        if (p.file) {
            curl_mime_filedata(part, p.file->c_str());  // streamed from disk by curl
        } else {
            curl_mime_data(part, p.value.data(), p.value.size());
        }
        if (p.filename) curl_mime_filename(part, p.filename->c_str());
        if (p.content_type) curl_mime_type(part, p.content_type->c_str());
    }
    curl_slist* list = nullptr;
    if (!token_.empty())
        list = curl_slist_append(list, ("Authorization: Bearer " + token_).c_str());
    // No "Expect: 100-continue" round trip.
    list = curl_slist_append(list, "Expect:");
    std::unique_ptr<curl_slist, SlistDeleter> headers(list);
    std::string url = base_ + path;
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_MIMEPOST, mime.get());
    return perform(curl.get(), headers.get());
}

}  // namespace kiln::test
