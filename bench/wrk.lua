-- wrk script of bench/api: ends every run with one machine-readable line, and for an upload run
-- builds the multipart body once and counts the response statuses.
--
-- Environment (read in every Lua state wrk makes: the main one and one per thread):
--   KILN_BENCH_NAME     the run's name on the result line (no spaces)
--   KILN_BENCH_UPLOAD   a file to upload: the run POSTs multipart/form-data with it
--   KILN_BENCH_TYPE     the job type of the upload (image.thumbnails)
--
-- The result line (times in ms, rates per second):
--   kiln-bench name=N requests=N seconds=S rps=R p50_ms=L p99_ms=L connect_errors=N
--       read_errors=N write_errors=N timeouts=N http_errors=N status_201=N status_other=N
-- http_errors is wrk's own count of responses with a status >= 400. status_201 and status_other
-- are counted only in upload runs (-1 otherwise): a Lua response() callback would slow the
-- load generator down in the light runs, which would flatter the ratio to the ceiling.

local name = os.getenv("KILN_BENCH_NAME") or "run"
local upload = os.getenv("KILN_BENCH_UPLOAD")

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

    -- Per thread; done() adds them up through the thread objects setup() kept.
    created = 0
    other = 0
    function response(status, headers, body)
        if status == 201 then
            created = created + 1
        else
            other = other + 1
        end
    end
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local status_201, status_other = -1, -1
    if upload then
        status_201, status_other = 0, 0
        for _, thread in ipairs(threads) do
            status_201 = status_201 + (thread:get("created") or 0)
            status_other = status_other + (thread:get("other") or 0)
        end
    end
    local e = summary.errors
    io.write(string.format(
        "kiln-bench name=%s requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f " ..
        "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d http_errors=%d " ..
        "status_201=%d status_other=%d\n",
        name, summary.requests, seconds, summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.connect, e.read, e.write, e.timeout, e.status, status_201, status_other))
end
