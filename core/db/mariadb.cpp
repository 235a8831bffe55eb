#include "core/db/mariadb.hpp"

#include <errmsg.h>
#include <mysql.h>

#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "core/db/migrate.hpp"

namespace kiln::db {
namespace {

// Client error codes that mean the connection is gone, not that the statement was wrong.
bool is_connection_error(unsigned err) {
    switch (err) {
        case CR_CONNECTION_ERROR:
        case CR_CONN_HOST_ERROR:
        case CR_SERVER_GONE_ERROR:
        case CR_SERVER_LOST:
        case CR_COMMANDS_OUT_OF_SYNC:
        case CR_SERVER_LOST_EXTENDED:
        case 1053:  // ER_SERVER_SHUTDOWN
        case 1927:  // ER_CONNECTION_KILLED
            return true;
        default:
            return false;
    }
}

std::unexpected<Error> make_error(std::string_view operation, unsigned err, const char* sqlstate,
                                  const char* message) {
    ErrorCode code = is_connection_error(err) ? ErrorCode::unavailable : ErrorCode::internal;
    return fail(code, fmt::format("{}: {}", operation, message),
                fmt::format("{}/{}", err, sqlstate));
}

}  // namespace

void init_library() {
    static std::once_flag once;
    std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

const std::string& Row::text(std::size_t i) const {
    static const std::string empty;
    const auto& c = columns_.at(i);
    return c ? *c : empty;
}

std::int64_t Row::integer(std::size_t i) const {
    const auto& c = columns_.at(i);
    if (!c || c->empty()) return 0;
    return std::stoll(*c);
}

// ---- Statement -------------------------------------------------------------------------------

Statement::Statement(Connection& owner, st_mysql_stmt* stmt, std::string sql)
    : owner_(owner), stmt_(stmt), sql_(std::move(sql)) {}

Statement::~Statement() {
    if (stmt_ != nullptr) mysql_stmt_close(stmt_);
}

Result<> Statement::stmt_error(std::string_view operation) {
    auto err = make_error(operation, mysql_stmt_errno(stmt_), mysql_stmt_sqlstate(stmt_),
                          mysql_stmt_error(stmt_));
    if (err.error().code == ErrorCode::unavailable) owner_.broken_ = true;
    return err;
}

Result<> Statement::bind_and_execute(std::span<const Value> params) {
    const auto expected = static_cast<std::size_t>(mysql_stmt_param_count(stmt_));
    if (expected != params.size()) {
        return fail(ErrorCode::internal, fmt::format("statement expects {} params, got {}: {}",
                                                     expected, params.size(), sql_));
    }
    std::vector<MYSQL_BIND> binds(params.size());
    std::vector<long long> ints(params.size());
    std::vector<unsigned long> lengths(params.size());
    std::vector<my_bool> nulls(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
        MYSQL_BIND& b = binds[i];
        std::memset(&b, 0, sizeof b);
        if (std::holds_alternative<std::nullptr_t>(params[i])) {
            b.buffer_type = MYSQL_TYPE_NULL;
            nulls[i] = 1;
            b.is_null = &nulls[i];
        } else if (const auto* n = std::get_if<std::int64_t>(&params[i])) {
            ints[i] = *n;
            b.buffer_type = MYSQL_TYPE_LONGLONG;
            b.buffer = &ints[i];
        } else {
            const auto& s = std::get<std::string>(params[i]);
            lengths[i] = s.size();
            b.buffer_type = MYSQL_TYPE_STRING;
            b.buffer = const_cast<char*>(s.data());
            b.buffer_length = s.size();
            b.length = &lengths[i];
        }
    }
    if (!binds.empty() && mysql_stmt_bind_param(stmt_, binds.data()) != 0) {
        return stmt_error("mysql_stmt_bind_param");
    }
    if (mysql_stmt_execute(stmt_) != 0) return stmt_error("mysql_stmt_execute");
    return {};
}

Result<std::uint64_t> Statement::execute(std::span<const Value> params) {
    if (auto r = bind_and_execute(params); !r) return std::unexpected(r.error());
    auto affected = mysql_stmt_affected_rows(stmt_);
    // A statement that unexpectedly returned rows must be drained before the next command.
    mysql_stmt_free_result(stmt_);
    return affected == static_cast<my_ulonglong>(-1) ? 0 : affected;
}

Result<std::vector<Row>> Statement::query(std::span<const Value> params) {
    if (auto r = bind_and_execute(params); !r) return std::unexpected(r.error());
    const unsigned ncols = mysql_stmt_field_count(stmt_);
    std::vector<Row> rows;
    if (ncols == 0) return rows;

    // Every column is read as text into a small buffer; longer values are re-read whole with
    // mysql_stmt_fetch_column.
    constexpr unsigned long initial = 256;
    std::vector<MYSQL_BIND> binds(ncols);
    std::vector<std::vector<char>> buffers(ncols, std::vector<char>(initial));
    std::vector<unsigned long> lengths(ncols);
    std::vector<my_bool> nulls(ncols);
    std::vector<my_bool> errors(ncols);
    for (unsigned i = 0; i < ncols; ++i) {
        MYSQL_BIND& b = binds[i];
        std::memset(&b, 0, sizeof b);
        b.buffer_type = MYSQL_TYPE_STRING;
        b.buffer = buffers[i].data();
        b.buffer_length = initial;
        b.length = &lengths[i];
        b.is_null = &nulls[i];
        b.error = &errors[i];
    }
    // Buffered: the whole result (callers bound it with LIMIT) is read at once, and with it the
    // end-of-rows packet whose warning count an unbuffered read leaves unrecorded (see
    // Connection::warning_count).
    if (mysql_stmt_store_result(stmt_) != 0) {
        auto err = stmt_error("mysql_stmt_store_result");
        mysql_stmt_free_result(stmt_);
        return std::unexpected(err.error());
    }
    if (mysql_stmt_bind_result(stmt_, binds.data()) != 0) {
        auto err = stmt_error("mysql_stmt_bind_result");
        mysql_stmt_free_result(stmt_);
        return std::unexpected(err.error());
    }
    while (true) {
        int rc = mysql_stmt_fetch(stmt_);
        if (rc == MYSQL_NO_DATA) break;
        if (rc == 1) {
            auto err = stmt_error("mysql_stmt_fetch");
            mysql_stmt_free_result(stmt_);
            return std::unexpected(err.error());
        }
        std::vector<std::optional<std::string>> columns(ncols);
        for (unsigned i = 0; i < ncols; ++i) {
            if (nulls[i]) continue;
            if (lengths[i] <= initial) {
                columns[i].emplace(buffers[i].data(), lengths[i]);
                continue;
            }
            std::string whole(lengths[i], '\0');
            MYSQL_BIND big;
            std::memset(&big, 0, sizeof big);
            unsigned long len = 0;
            big.buffer_type = MYSQL_TYPE_STRING;
            big.buffer = whole.data();
            big.buffer_length = whole.size();
            big.length = &len;
            if (mysql_stmt_fetch_column(stmt_, &big, i, 0) != 0) {
                auto err = stmt_error("mysql_stmt_fetch_column");
                mysql_stmt_free_result(stmt_);
                return std::unexpected(err.error());
            }
            columns[i] = std::move(whole);
        }
        rows.emplace_back(std::move(columns));
    }
    mysql_stmt_free_result(stmt_);
    return rows;
}

std::uint64_t Statement::last_insert_id() const { return mysql_stmt_insert_id(stmt_); }

// ---- Connection ------------------------------------------------------------------------------

Result<std::unique_ptr<Connection>> Connection::open(const DatabaseConfig& config,
                                                     bool multi_statements,
                                                     std::chrono::seconds io_timeout) {
    MYSQL* handle = mysql_init(nullptr);
    if (handle == nullptr) return fail(ErrorCode::internal, "mysql_init: out of memory");
    std::unique_ptr<Connection> conn(new Connection(handle));

    unsigned timeout = static_cast<unsigned>(config.connect_timeout.count());
    unsigned io_seconds = static_cast<unsigned>(io_timeout.count());
    mysql_optionsv(handle, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_optionsv(handle, MYSQL_OPT_READ_TIMEOUT, &io_seconds);
    mysql_optionsv(handle, MYSQL_OPT_WRITE_TIMEOUT, &io_seconds);
    mysql_optionsv(handle, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    // Sessions run in UTC so DATETIME(3) values and NOW(3) are UTC everywhere, and in READ
    // COMMITTED so the queue's SKIP LOCKED claims take no gap locks.
    mysql_optionsv(handle, MYSQL_INIT_COMMAND,
                   "SET time_zone = '+00:00', tx_isolation = 'READ-COMMITTED'");
    const char* socket = config.socket.empty() ? nullptr : config.socket.c_str();
    const char* host = config.socket.empty() ? config.host.c_str() : "localhost";
    unsigned long flags = CLIENT_FOUND_ROWS;
    if (multi_statements) flags |= CLIENT_MULTI_STATEMENTS;
    if (mysql_real_connect(handle, host, config.user.c_str(), config.password.c_str(),
                           config.name.c_str(), config.port, socket, flags) == nullptr) {
        unsigned err = mysql_errno(handle);
        // Every failure to connect (refused, unknown host, access denied during a restart)
        // means the database is not usable now.
        return fail(ErrorCode::unavailable,
                    fmt::format("mysql_real_connect: {}", mysql_error(handle)),
                    fmt::format("{}/{}", err, mysql_sqlstate(handle)));
    }
    return conn;
}

Connection::~Connection() {
    statements_.clear();  // statements close before their connection
    if (handle_ != nullptr) mysql_close(handle_);
}

Result<> Connection::check(int rc, std::string_view operation) {
    if (rc == 0) return {};
    auto err =
        make_error(operation, mysql_errno(handle_), mysql_sqlstate(handle_), mysql_error(handle_));
    if (err.error().code == ErrorCode::unavailable) broken_ = true;
    return err;
}

Result<Statement*> Connection::prepare(std::string_view sql) {
    std::string key(sql);
    if (auto it = statements_.find(key); it != statements_.end()) return it->second.get();
    MYSQL_STMT* stmt = mysql_stmt_init(handle_);
    if (stmt == nullptr) return fail(ErrorCode::internal, "mysql_stmt_init: out of memory");
    if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
        auto err = make_error("mysql_stmt_prepare", mysql_stmt_errno(stmt),
                              mysql_stmt_sqlstate(stmt), mysql_stmt_error(stmt));
        mysql_stmt_close(stmt);
        if (err.error().code == ErrorCode::unavailable) broken_ = true;
        return err;
    }
    auto owned = std::make_unique<Statement>(*this, stmt, key);
    Statement* raw = owned.get();
    statements_.emplace(std::move(key), std::move(owned));
    return raw;
}

Result<std::uint64_t> Connection::execute(std::string_view sql,
                                          std::initializer_list<Value> params) {
    auto stmt = prepare(sql);
    if (!stmt) return std::unexpected(stmt.error());
    return (*stmt)->execute(std::span<const Value>(params.begin(), params.size()));
}

Result<std::vector<Row>> Connection::query(std::string_view sql,
                                           std::initializer_list<Value> params) {
    auto stmt = prepare(sql);
    if (!stmt) return std::unexpected(stmt.error());
    return (*stmt)->query(std::span<const Value>(params.begin(), params.size()));
}

unsigned Connection::warning_count() const { return mysql_warning_count(handle_); }

Result<> Connection::begin() { return check(mysql_query(handle_, "START TRANSACTION"), "begin"); }

Result<> Connection::commit() { return check(mysql_commit(handle_) ? 1 : 0, "commit"); }

void Connection::rollback() noexcept {
    if (!broken_) (void)mysql_rollback(handle_);
}

Result<> Connection::run_script(std::string_view sql) {
    if (auto r = check(mysql_real_query(handle_, sql.data(), sql.size()), "run_script"); !r)
        return r;
    // Drain every statement's result; an error in a later statement shows up here.
    while (true) {
        MYSQL_RES* res = mysql_store_result(handle_);
        if (res != nullptr) mysql_free_result(res);
        int rc = mysql_next_result(handle_);
        if (rc == -1) break;
        if (rc > 0) return check(rc, "run_script");
    }
    return {};
}

Result<> Connection::ping() { return check(mysql_ping(handle_), "mysql_ping"); }

// ---- Session ---------------------------------------------------------------------------------

Result<Connection*> Session::get() {
    if (connection_ && connection_->broken()) connection_.reset();
    if (!connection_) {
        auto conn = Connection::open(config_);
        if (!conn) return std::unexpected(conn.error());
        if (auto schema = check_schema_version(**conn); !schema) {
            return std::unexpected(schema.error());
        }
        connection_ = std::move(*conn);
    }
    return connection_.get();
}

Result<Connection*> Session::checked() {
    return run_twice_if_lost([](Connection& conn) -> Result<Connection*> {
        if (auto r = conn.ping(); !r) return std::unexpected(r.error());
        return &conn;
    });
}

void Session::note(const Error& error) {
    if (error.code == ErrorCode::unavailable) connection_.reset();
}

bool is_retryable(const Error& error) {
    return error.native.starts_with("1213/") || error.native.starts_with("1205/");
}

}  // namespace kiln::db
