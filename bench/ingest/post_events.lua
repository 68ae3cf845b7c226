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
local bodies, pool_n = {}, 0
local counts = {}
local threads = {}
local batch = 1
local path = "/events"

local function read_pool(file)
  local lines = {}
  for line in io.lines(file) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  return lines
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  local file = args[1] or error("usage: -- POOL_FILE [BATCH]")
  batch = tonumber(args[2] or "1")
  if wrk.path and wrk.path ~= "" and wrk.path ~= "/" then path = wrk.path end
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
  counts = { total = 0, s200 = 0, s207 = 0, s503 = 0, other = 0 }
end

local next_i = 0
local shown = 0
function request()
  next_i = next_i % pool_n + 1
  return bodies[next_i]
end

function response(status, headers, body)
  counts.total = counts.total + 1
  if status == 200 then counts.s200 = counts.s200 + 1
  elseif status == 207 then counts.s207 = counts.s207 + 1
  elseif status == 503 then counts.s503 = counts.s503 + 1
  else counts.other = counts.other + 1 end
  if status ~= 200 and shown < 3 then  -- a few samples of what went wrong, for the log
    shown = shown + 1
    io.stderr:write(string.format("wrk: HTTP %d: %s\n", status, string.sub(body or "", 1, 300)))
  end
  -- published for done(), which runs in the main Lua state
  wrk.thread:set("c200", counts.s200)
  wrk.thread:set("c207", counts.s207)
  wrk.thread:set("c503", counts.s503)
  wrk.thread:set("cother", counts.other)
end

function done(summary, latency, requests)
  local t = { c200 = 0, c207 = 0, c503 = 0, cother = 0 }
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (tonumber(th:get(k)) or 0) end
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT requests=%d status_200=%d status_207=%d status_503=%d status_other=%d errors=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d duration_us=%d\n",
    summary.requests, t.c200, t.c207, t.c503, t.cother, errors,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.duration))
end
