#pragma once
// MariaDB access through Connector/C prepared statements only. This header and mariadb.cpp are
// the only place that includes <mysql.h>; callers see Connection, Statement and Row.
//
// Errors: a lost or refused connection fails with ErrorCode::unavailable (the Session then
// reconnects on next use); any other server error with ErrorCode::internal, native set to
// "errno/sqlstate" (e.g. "1213/40001" for a deadlock, see is_retryable()).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

struct st_mysql;
struct st_mysql_stmt;

namespace kiln::db {

// Call once before starting threads.
void init_library();

using Value = std::variant<std::nullptr_t, std::int64_t, std::string>;

class Row final {
  public:
    explicit Row(std::vector<std::optional<std::string>> columns) : columns_(std::move(columns)) {}
    [[nodiscard]] bool is_null(std::size_t i) const { return !columns_.at(i).has_value(); }
    [[nodiscard]] const std::string& text(std::size_t i) const;  // "" for NULL
    [[nodiscard]] std::optional<std::string> optional_text(std::size_t i) const {
        return columns_.at(i);
    }
    [[nodiscard]] std::int64_t integer(std::size_t i) const;  // 0 for NULL
    [[nodiscard]] std::size_t size() const { return columns_.size(); }

  private:
    std::vector<std::optional<std::string>> columns_;
};

class Connection;

class Statement final {
  public:
    Statement(Connection& owner, st_mysql_stmt* stmt, std::string sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    // Runs a statement that returns no rows; the affected-row count.
    [[nodiscard]] Result<std::uint64_t> execute(std::span<const Value> params);
    // Runs a query and reads all its rows (callers bound result sizes with LIMIT).
    [[nodiscard]] Result<std::vector<Row>> query(std::span<const Value> params);
    [[nodiscard]] std::uint64_t last_insert_id() const;

  private:
    Result<> bind_and_execute(std::span<const Value> params);
    Result<> stmt_error(std::string_view operation);
    Connection& owner_;
    st_mysql_stmt* stmt_;
    std::string sql_;
};

class Connection final {
  public:
    // Connects with the configured timeouts. `io_timeout` bounds each read and write on the
    // connection afterwards; zero means none (a migration's index build on a large table may
    // take longer than any request should). Fails with unavailable when the server cannot be
    // reached.
    static Result<std::unique_ptr<Connection>> open(
        const DatabaseConfig& config, bool multi_statements = false,
        std::chrono::seconds io_timeout = std::chrono::seconds{30});
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // The statement for `sql`, prepared on first use and reused after (owned by the connection).
    [[nodiscard]] Result<Statement*> prepare(std::string_view sql);

    [[nodiscard]] Result<std::uint64_t> execute(std::string_view sql,
                                                std::initializer_list<Value> params = {});
    [[nodiscard]] Result<std::vector<Row>> query(std::string_view sql,
                                                 std::initializer_list<Value> params = {});
    // Warnings of the previous statement, such as MariaDB's note that LIMIT ROWS EXAMINED cut
    // a query short. No round trip: the count comes with the statement's last packet.
    // Connector/C records it for a result read buffered, as query() reads, and leaves it 0 for
    // one read row by row.
    [[nodiscard]] unsigned warning_count() const;

    [[nodiscard]] Result<> begin();
    [[nodiscard]] Result<> commit();
    void rollback() noexcept;

    // Runs trusted, static SQL text with several statements (migrations only: no user data).
    [[nodiscard]] Result<> run_script(std::string_view sql);

    [[nodiscard]] Result<> ping();
    [[nodiscard]] bool broken() const { return broken_; }

  private:
    explicit Connection(st_mysql* handle) : handle_(handle) {}
    Result<> check(int rc, std::string_view operation);
    friend class Statement;
    st_mysql* handle_;
    bool broken_ = false;
    std::unordered_map<std::string, std::unique_ptr<Statement>> statements_;
};

// A connection that reopens itself after an outage: one per thread.
class Session final {
  public:
    explicit Session(DatabaseConfig config) : config_(std::move(config)) {}
    // The live connection, connecting first when there is none or the last one broke. A new
    // connection is kept only if the schema is as new as this code needs
    // (check_schema_version).
    [[nodiscard]] Result<Connection*> get();
    // The live connection as get() gives it, then checked with a ping (a round trip) and
    // replaced once if it is gone: for work that follows a long wait, and for /health.
    [[nodiscard]] Result<Connection*> checked();
    // Drops the connection if `error` says it is gone, so the next get() reconnects.
    void note(const Error& error);

    // Runs `work(Connection&)` and returns its Result. A connection that died while idle (the
    // database restarted) is only found out by using it, so when `work` fails because the
    // connection is gone it runs once more on a fresh one. Only for work that is safe to run
    // twice: a write may have been applied before the connection dropped. Reads are; so is a
    // claim, whose jobs come back to the queue when their lease expires.
    template <typename Work>
    auto run_twice_if_lost(Work&& work) -> decltype(work(std::declval<Connection&>())) {
        for (int attempt = 1;; ++attempt) {
            auto conn = get();
            if (!conn) return std::unexpected(conn.error());
            auto result = work(**conn);
            if (!result) note(result.error());
            if (result || result.error().code != ErrorCode::unavailable || attempt == 2) {
                return result;
            }
        }
    }

  private:
    DatabaseConfig config_;
    std::unique_ptr<Connection> connection_;
};

// True for errors worth repeating the transaction for: deadlock (1213), lock wait timeout (1205).
bool is_retryable(const Error& error);

}  // namespace kiln::db
