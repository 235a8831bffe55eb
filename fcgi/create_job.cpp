// POST /api/v1/jobs: a multipart upload streamed part by part into a staging directory (hashed
// as it is written, its type decided by libmagic from the first bytes), or a JSON body for
// converters without inputs. Nothing is visible until the files are published by rename and the
// row is committed; any failure before that leaves neither row nor file.

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "core/http/multipart.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "core/storage/file_name.hpp"
#include "core/util/crypto.hpp"
#include "core/util/json_limits.hpp"
#include "fcgi/api_handler.hpp"

namespace kiln::api {
namespace {

constexpr std::size_t read_chunk_bytes = 256 * 1024;
constexpr std::size_t max_original_name_bytes = 1024;

// The fields of a create request, from either body format.
struct CreateFields {
    std::optional<std::string> type;
    std::optional<std::string> params;  // JSON text
    std::optional<std::string> priority;
};

struct UploadedFile {
    jobs::FileRecord record;
    std::string head;  // first bytes, for libmagic
};

// Receives the multipart parts: small form fields into memory, files into the staging area.
class UploadCollector final : public http::MultipartHandler {
  public:
    UploadCollector(Context& ctx, storage::Staging& staging)
        : ctx_(ctx), staging_(staging), max_field_(ctx.app.config.api.max_field_bytes) {}

    Result<> on_part_begin(const http::PartHeaders& headers) override {
        // type, params and priority are fields even when sent as a file (curl -F params=@p.json);
        // any other part with a file name is an upload.
        current_field_ = field_slot(headers.name);
        if (current_field_ == nullptr && headers.filename) return begin_file(headers);
        if (current_field_ == nullptr) {
            return fail(ErrorCode::invalid_request,
                        "unknown form field '" + headers.name.substr(0, 64) +
                            "' (expected type, params, priority or files)");
        }
        if (*current_field_) {
            return fail(ErrorCode::invalid_request, "field '" + headers.name + "' given twice");
        }
        current_field_->emplace();
        return {};
    }

    Result<> on_part_data(std::string_view data) override {
        if (current_field_ != nullptr) {
            if ((*current_field_)->size() + data.size() > max_field_) {
                return fail(ErrorCode::payload_too_large,
                            "a form field is larger than " + std::to_string(max_field_) + " bytes");
            }
            (*current_field_)->append(data);
            return {};
        }
        UploadedFile& file = files_.back();
        if (file.head.size() < magic::head_bytes) {
            file.head.append(data.substr(0, magic::head_bytes - file.head.size()));
        }
        if (auto r = writer_->write(data); !r) return r;
        if (writer_->size() > file_limit()) {
            return fail(ErrorCode::payload_too_large,
                        "file '" + file.record.name + "' is larger than the converter's limit of " +
                            std::to_string(file_limit()) + " bytes");
        }
        return {};
    }

    Result<> on_part_end() override {
        if (current_field_ != nullptr) {
            current_field_ = nullptr;
            return {};
        }
        UploadedFile& file = files_.back();
        if (writer_->size() == 0) {
            return fail(ErrorCode::invalid_request, "file '" + file.record.name + "' is empty");
        }
        file.record.size = writer_->size();
        auto digest = writer_->finish();
        if (!digest) return std::unexpected(digest.error());
        file.record.sha256 = std::move(*digest);
        file.record.content_type = ctx_.magic.mime_type(file.head);
        file.head.clear();
        file.head.shrink_to_fit();
        writer_.reset();
        return {};
    }

    CreateFields& fields() { return fields_; }
    std::vector<UploadedFile>& files() { return files_; }

  private:
    std::optional<std::string>* field_slot(const std::string& name) {
        if (name == "type") return &fields_.type;
        if (name == "params") return &fields_.params;
        if (name == "priority") return &fields_.priority;
        return nullptr;
    }

    // The converter's per-file limit once `type` is known (it usually comes first), else the
    // largest any converter allows; the final check happens once the type is known for sure.
    std::uint64_t file_limit() const {
        if (fields_.type) {
            if (auto it = ctx_.app.converters.find(*fields_.type); it != ctx_.app.converters.end())
                return it->second.max_upload_bytes;
        }
        std::uint64_t largest = 0;
        for (const auto& [name, def] : ctx_.app.converters)
            largest = std::max(largest, def.max_upload_bytes);
        return largest;
    }

    Result<> begin_file(const http::PartHeaders& headers) {
        if (files_.size() >= max_files()) {
            return fail(ErrorCode::payload_too_large,
                        "too many files: at most " + std::to_string(max_files()));
        }
        UploadedFile file;
        file.record.original_name =
            storage::to_valid_utf8(*headers.filename, max_original_name_bytes);
        file.record.name =
            storage::unique_file_name(storage::sanitize_file_name(*headers.filename), taken_names_);
        auto writer = staging_.create(file.record.name);
        if (!writer) return std::unexpected(writer.error());
        writer_ = std::move(*writer);
        files_.push_back(std::move(file));
        return {};
    }

    std::size_t max_files() const {
        if (fields_.type) {
            if (auto it = ctx_.app.converters.find(*fields_.type); it != ctx_.app.converters.end())
                return it->second.max_files;
        }
        return ctx_.app.config.api.max_parts;
    }

    Context& ctx_;
    storage::Staging& staging_;
    std::size_t max_field_;
    CreateFields fields_;
    std::optional<std::string>* current_field_ = nullptr;
    std::vector<UploadedFile> files_;
    std::unique_ptr<storage::FileWriter> writer_;
    std::set<std::string> taken_names_;
};

// The most files a request may carry: what the converter allows when `type` came first,
// else api.max_parts (UploadCollector::max_files); the parser's bound must let both through.
std::size_t most_files_of_any_request(const AppState& app) {
    std::size_t most = app.config.api.max_parts;
    for (const auto& [name, def] : app.converters)
        most = std::max<std::size_t>(most, def.max_files);
    return most;
}

// Reads the whole multipart body through the parser. Fails when the body ends before its
// Content-Length or breaks off (the client went away), or is malformed.
Result<> stream_multipart(http::Request& request, const std::string& boundary, const AppState& app,
                          UploadCollector& collector) {
    const ApiConfig& limits = app.config.api;
    http::MultipartLimits mp;
    mp.max_parts = most_files_of_any_request(app) + 3;  // the files plus the three fields
    mp.max_part_header_bytes = limits.max_part_header_bytes;
    http::MultipartParser parser(boundary, mp, collector);
    // One buffer per request thread, kept: allocating (and zeroing) 256 KiB per request showed
    // up as 8 % of kiln-api's time under load.
    thread_local const std::unique_ptr<char[]> buffer =
        std::make_unique_for_overwrite<char[]>(read_chunk_bytes);
    auto r = http::read_body(request, limits.max_request_bytes, buffer.get(), read_chunk_bytes,
                             [&](std::string_view data) { return parser.feed(data); });
    if (!r) return r;
    return parser.finish();
}

// Checks everything that needs the converter: known type, params, priority, files.
struct ValidatedJob {
    const converters::Definition* def = nullptr;
    nlohmann::json params;
    int priority = jobs::priority_standard;
};

Result<ValidatedJob> validate(const AppState& app, const CreateFields& fields,
                              const std::vector<UploadedFile>& files) {
    if (!fields.type || fields.type->empty()) {
        return fail(ErrorCode::invalid_request, "the field 'type' is required");
    }
    auto it = app.converters.find(*fields.type);
    if (it == app.converters.end()) {
        return fail(ErrorCode::unknown_type,
                    "unknown type '" + fields.type->substr(0, 64) + "'; see GET /api/v1/types");
    }
    ValidatedJob v;
    v.def = &it->second;

    nlohmann::json params = nlohmann::json::object();
    if (fields.params && !fields.params->empty()) {
        auto parsed = util::parse_client_json(*fields.params, "params");
        if (!parsed) return std::unexpected(parsed.error());
        params = std::move(*parsed);
    }
    auto normalised = converters::validate_params(*v.def, params);
    if (!normalised) return std::unexpected(normalised.error());
    v.params = std::move(*normalised);

    if (fields.priority) {
        auto p = jobs::parse_priority(*fields.priority);
        if (!p) {
            return fail(ErrorCode::invalid_request, "priority must be premium, standard or batch");
        }
        v.priority = *p;
    }

    if (files.size() < v.def->min_files || files.size() > v.def->max_files) {
        return fail(ErrorCode::invalid_request,
                    fmt::format("{} takes {} to {} files, got {}", v.def->name, v.def->min_files,
                                v.def->max_files, files.size()));
    }
    for (const auto& f : files) {
        if (f.record.size > v.def->max_upload_bytes) {
            return fail(ErrorCode::payload_too_large,
                        fmt::format("file '{}' is larger than {}'s limit of {} bytes",
                                    f.record.name, v.def->name, v.def->max_upload_bytes));
        }
        if (!v.def->accepts_mime(f.record.content_type)) {
            // native carries the detected type into the problem body (detected_type).
            return fail(ErrorCode::unsupported_media_type,
                        fmt::format("file '{}' is {}, which {} does not accept", f.record.name,
                                    f.record.content_type, v.def->name),
                        f.record.content_type);
        }
    }
    return v;
}

Result<CreateFields> read_json_request(http::Request& request, const ApiConfig& limits) {
    auto body = http::read_small_body(request, limits.max_json_body_bytes);
    if (!body) return std::unexpected(body.error());
    auto json = util::parse_client_json(*body, "the request body");
    if (!json) return std::unexpected(json.error());
    if (!json->is_object()) {
        return fail(ErrorCode::invalid_request, "the request body must be a JSON object");
    }
    CreateFields fields;
    for (const auto& [key, value] : json->items()) {
        if (key == "params") {
            fields.params = value.dump();
        } else if (key != "type" && key != "priority") {
            return fail(ErrorCode::invalid_request,
                        "unexpected member '" + key.substr(0, 64) +
                            "' (the members are type, params and priority)");
        } else if (!value.is_string()) {
            return fail(ErrorCode::invalid_request, "'" + key + "' must be a string");
        } else {
            (key == "type" ? fields.type : fields.priority) = value.get<std::string>();
        }
    }
    return fields;
}

// Printable ASCII, 1..255 bytes (it is stored and compared as given).
bool valid_idempotency_key(const std::string& key) {
    if (key.empty() || key.size() > 255) return false;
    return std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

// What makes two creations "the same request": converter, params, priority and the files' names
// and contents.
std::string request_fingerprint(const jobs::NewJob& job) {
    util::Sha256 h;
    auto field = [&](std::string_view v) {
        h.update(std::to_string(v.size()));
        h.update(":");
        h.update(v);
    };
    field(job.type);
    field(job.params.dump());
    field(std::to_string(job.priority));
    for (const auto& f : job.sources) {
        field(f.original_name);
        field(f.sha256);
    }
    return h.finish_hex();
}

// The response for a key seen before: the original job (200) or a mismatch (422).
Result<http::Response> replay(Context& ctx, const jobs::IdempotencyRecord& record,
                              const std::string& fingerprint) {
    if (record.request_sha256 != fingerprint) {
        return fail(ErrorCode::idempotency_mismatch,
                    "this Idempotency-Key was used with a different request in the last 24 h");
    }
    auto original = get_job(ctx, record.job_id);
    if (original) original->header("Location", "/api/v1/jobs/" + record.job_id);
    return original;
}

}  // namespace

Result<http::Response> create_job(Context& ctx, http::Request& request) {
    const ApiConfig& limits = ctx.app.config.api;
    if (auto r = http::check_body_length(request, limits.max_request_bytes); !r) {
        return std::unexpected(r.error());
    }

    jobs::NewJob job;
    job.id = util::new_job_id();
    job.owner = ctx.viewer.owner;
    // An empty header is not taken for no header: the client meant a key and sent none.
    job.idempotency_key = request.idempotency_key.value_or("");
    if (request.idempotency_key && !valid_idempotency_key(job.idempotency_key)) {
        return fail(ErrorCode::invalid_request,
                    "Idempotency-Key must be 1..255 printable ASCII characters");
    }

    CreateFields fields;
    std::vector<UploadedFile> files;
    std::unique_ptr<storage::Staging> staging;
    const std::string media_type = http::media_type(request.content_type);
    if (auto boundary = http::multipart_boundary(request.content_type)) {
        auto staged = ctx.app.storage.stage(storage::Area::sources, job.id);
        if (!staged) return std::unexpected(staged.error());
        staging = std::move(*staged);
        UploadCollector collector(ctx, *staging);
        if (auto r = stream_multipart(request, *boundary, ctx.app, collector); !r) {
            return std::unexpected(r.error());
        }
        fields = std::move(collector.fields());
        files = std::move(collector.files());
    } else if (media_type == "application/json") {
        // JSON is UTF-8 (RFC 8259); a body declared otherwise would be read wrong.
        if (const auto charset = http::charset_of(request.content_type);
            !charset.empty() && charset != "utf-8") {
            return fail(ErrorCode::unsupported_media_type,
                        "application/json is read as UTF-8; charset=" + charset + " is not", "");
        }
        auto parsed = read_json_request(request, limits);
        if (!parsed) return std::unexpected(parsed.error());
        fields = std::move(*parsed);
    } else if (media_type == "multipart/form-data") {
        return fail(ErrorCode::invalid_request,
                    "multipart/form-data needs one boundary parameter of 1 to 70 characters");
    } else {
        return fail(ErrorCode::unsupported_media_type,
                    "send multipart/form-data or application/json", "");
    }

    auto valid = validate(ctx.app, fields, files);
    if (!valid) return std::unexpected(valid.error());
    job.type = valid->def->name;
    job.params = std::move(valid->params);
    job.priority = valid->priority;
    job.max_attempts = static_cast<int>(valid->def->max_attempts);
    for (auto& f : files) job.sources.push_back(std::move(f.record));

    // An upload can take minutes, and a connection that died meanwhile (a database restart, its
    // wait_timeout) is found out only when used: after the files were published, leaving them
    // without a row. Check it first, taking a fresh one if it is gone, so that from here on a
    // 503 means the database is down.
    auto conn = staging ? ctx.db.checked() : ctx.db.get();
    if (!conn) return std::unexpected(conn.error());
    db::Connection& db = **conn;

    if (!job.idempotency_key.empty()) {
        job.request_sha256 = request_fingerprint(job);
        auto seen = jobs::find_idempotency_key(db, job.owner, job.idempotency_key);
        if (!seen) return std::unexpected(seen.error());
        // Seen before: nothing is stored twice (the staged upload is dropped).
        if (*seen) return replay(ctx, **seen, job.request_sha256);
    }

    // Files first, then the row: a crash in between leaves an orphan directory (swept later),
    // never a row whose files are missing.
    if (staging) {
        if (auto r = staging->commit(); !r) {
            // The rename may have published the files before the sync failed: no row will
            // name them, so they go now rather than at the next orphan sweep.
            staging->discard_committed();
            return std::unexpected(r.error());
        }
    }
    auto created = jobs::create_job(db, job, ctx.app.config.api.queue_position_cap);
    if (!created) {
        // With the connection lost mid-transaction (it answered a moment ago) the row may have
        // been committed: keep the files (the purge's orphan sweep removes them if it was not).
        // Any other failure rolled back, so the files go.
        if (staging && created.error().code != ErrorCode::unavailable) {
            staging->discard_committed();
        }
        if (created.error().native == "duplicate") {
            // A concurrent request with the same key won the race.
            auto seen = jobs::find_idempotency_key(db, job.owner, job.idempotency_key);
            if (seen && *seen) return replay(ctx, **seen, job.request_sha256);
        }
        return std::unexpected(created.error());
    }
    ctx.wakeup.notify();
    log::info("job created", {{"job", created->id},
                              {"type", created->type},
                              {"owner", created->owner},
                              {"files", created->sources.size()}});
    auto response = http::json_response(201, jobs::to_json(*created));
    response.header("Location", "/api/v1/jobs/" + created->id);
    return response;
}

}  // namespace kiln::api
