-- wrk script: POST /events with bodies from a pool of pre-built realistic events.
--
--   wrk -t1 -c64 -d15s --latency -s post_events.lua http://127.0.0.1:8080/events -- POOL BATCH
--
-- POOL is an NDJSON file of events (bench/ingest/run.sh makes it with source-generate, the
-- project's own model of shopper sessions). BATCH 1 posts one JSON object per request;
-- BATCH N > 1 posts a JSON array of N events. Every request body is built before the run
-- (wrk.format), so the client spends no time on JSON while measuring.
-- done() prints one machine-readable line:
--   RESULT requests=R status_200=A status_207=B status_503=C status_other=D errors=E
--          p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. duration_us=..
-- and the first few answers other than 200 on stderr ("wrk: HTTP 503: {...}").
-- setup(), response() and the counting are bench/wrk_common.lua's.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "../wrk_common.lua")
setup, response = common.setup, common.response

local bodies, pool_n = {}, 0
local batch = 1
local path = "/events"

local function read_pool(file)
  local lines = {}
  for line in io.lines(file) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  return lines
end

function init(args)
  local file = args[1] or error("usage: -- POOL_FILE [BATCH]")
  batch = tonumber(args[2] or "1")
  path = common.path()
  local lines = read_pool(file)
  if #lines == 0 then error("empty pool " .. file) end
  -- Each thread starts at its own place in the pool: different threads, different events.
  local start = ((tonumber(wrk.thread:get("id")) or 1) - 1) * 7919 % #lines
  local headers = { ["Content-Type"] = "application/json" }
  local n = math.max(64, math.min(1024, math.floor(#lines / batch)))
  for i = 0, n - 1 do
    local body
    if batch == 1 then
      body = lines[(start + i) % #lines + 1]
    else
      local parts = {}
      for k = 0, batch - 1 do parts[#parts + 1] = lines[(start + i * batch + k) % #lines + 1] end
      body = "[" .. table.concat(parts, ",") .. "]"
    end
    bodies[#bodies + 1] = wrk.format("POST", path, headers, body)
  end
  pool_n = #bodies
end

local next_i = 0
function request()
  next_i = next_i % pool_n + 1
  return bodies[next_i]
end

function done(summary, latency, requests)
  local t, errors = common.totals(summary)
  io.write(string.format(
    "RESULT requests=%d status_200=%d status_207=%d status_503=%d status_other=%d errors=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d duration_us=%d\n",
    summary.requests, t.c200, t.c207, t.c503, t.cother, errors,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.duration))
end
