-- wrk script of bench/api: ends every run with one machine-readable line; for an upload run it
-- builds the multipart body once.
--
-- Environment (read in every Lua state wrk makes: the main one and one per thread):
--   KILN_BENCH_NAME           the run's name on the result line (no spaces)
--   KILN_BENCH_UPLOAD         a file to upload: the run POSTs multipart/form-data with it
--   KILN_BENCH_TYPE           the job type of the upload (image.thumbnails)
--   KILN_BENCH_EXPECT_STATUS  count answers with this status and the others (201 for uploads)
--
-- The result line (times in ms, rates per second):
--   kiln-bench name=N requests=N seconds=S rps=R p50_ms=L p99_ms=L connect_errors=N
--       read_errors=N write_errors=N timeouts=N http_errors=N expected=N unexpected=N
-- http_errors is wrk's own count of answers with a status >= 400. expected and unexpected are
-- counted only when a status is expected (-1 otherwise): the Lua response() callback that counts
-- them slows the load generator down, which in the light runs would flatter the ratio to the
-- ceiling.

local name = os.getenv("KILN_BENCH_NAME") or "run"
local upload = os.getenv("KILN_BENCH_UPLOAD")
local expect_status = tonumber(os.getenv("KILN_BENCH_EXPECT_STATUS") or (upload and "201") or "")

if upload then
    local file = assert(io.open(upload, "rb"))
    local data = file:read("*a")
    file:close()
    local boundary = "kiln-bench-7d3f1c9a0b5e4d28"
    local parts = {
        "--" .. boundary,
        'Content-Disposition: form-data; name="type"',
        "",
        os.getenv("KILN_BENCH_TYPE") or "image.thumbnails",
        "--" .. boundary,
        'Content-Disposition: form-data; name="files"; filename="bench.png"',
        "Content-Type: image/png",
        "",
        data,
        "--" .. boundary .. "--",
        "",
    }
    wrk.method = "POST"
    wrk.body = table.concat(parts, "\r\n")
    wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

if expect_status then
    -- Per thread; done() adds them up through the thread objects setup() kept.
    expected = 0
    unexpected = 0
    function response(status, headers, body)
        if status == expect_status then
            expected = expected + 1
        else
            unexpected = unexpected + 1
        end
    end
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local expected, unexpected = -1, -1
    if expect_status then
        expected, unexpected = 0, 0
        for _, thread in ipairs(threads) do
            expected = expected + (thread:get("expected") or 0)
            unexpected = unexpected + (thread:get("unexpected") or 0)
        end
    end
    local e = summary.errors
    io.write(string.format(
        "kiln-bench name=%s requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f " ..
        "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d http_errors=%d " ..
        "expected=%d unexpected=%d\n",
        name, summary.requests, seconds, summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.connect, e.read, e.write, e.timeout, e.status, expected, unexpected))
end
