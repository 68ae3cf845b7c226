-- wrk script for bench/e2e's maximum-rate load: POST /events with JSON arrays of BATCH events
-- from a pool of realistic events (source-generate's shopper sessions), each sent with an
-- event_id of its own, so every row in the table can be told apart.
--
--   wrk -t1 -c32 -d20s -s post_unique.lua http://127.0.0.1:8080/events -- POOL BATCH TAG
--
-- POOL is an NDJSON file whose lines all begin with {"event_id":"...", (source-generate
-- writes event_id first). The pool's ids are replaced by TAG-<thread>-<n>, n counting up per
-- thread from 0, so ids never repeat within a run. The rest of each event is sent as is.
-- Building a body costs one table.concat of 3 * BATCH strings per request (LuaJIT).
-- done() prints one machine-readable line:
--   RESULT requests=R status_200=A status_207=B status_503=C status_other=D errors=E
--          events_sent=S p50_us=.. p90_us=.. p99_us=.. max_us=.. duration_us=..
-- and the first few answers other than 200 on stderr ("wrk: HTTP 503: {...}").
-- setup(), response() and the counting are bench/wrk_common.lua's.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "../wrk_common.lua")
setup, response = common.setup, common.response

local suffixes, pool_n = {}, 0
local batch, tag, path = 100, "e2e", "/events"
local sent = 0
local headers = { ["Content-Type"] = "application/json" }
local PREFIX = '{"event_id":"'

function init(args)
  local file = args[1] or error("usage: -- POOL_FILE BATCH TAG")
  batch = tonumber(args[2] or "100")
  tag = (args[3] or "e2e") .. "-" .. tostring(wrk.thread:get("id") or 1) .. "-"
  path = common.path()
  for line in io.lines(file) do
    if #line > 0 then
      if line:sub(1, #PREFIX) ~= PREFIX then
        error("pool line does not start with " .. PREFIX .. ": " .. line:sub(1, 60))
      end
      local close = line:find('"', #PREFIX + 1, true)  -- end of the id's string
      suffixes[#suffixes + 1] = line:sub(close)
    end
  end
  pool_n = #suffixes
  if pool_n == 0 then error("empty pool " .. file) end
end

local seq, pos = 0, 0
local parts = {}
function request()
  local k = 1
  parts[k] = "["
  for i = 1, batch do
    if i > 1 then k = k + 1; parts[k] = "," end
    pos = pos % pool_n + 1
    parts[k + 1] = PREFIX
    parts[k + 2] = tag
    parts[k + 3] = seq
    parts[k + 4] = suffixes[pos]
    k = k + 4
    seq = seq + 1
  end
  k = k + 1
  parts[k] = "]"
  for j = k + 1, #parts do parts[j] = nil end
  sent = sent + batch
  wrk.thread:set("csent", sent)
  return wrk.format("POST", path, headers, table.concat(parts))
end

function done(summary, latency, requests)
  local t, errors = common.totals(summary, "csent")
  io.write(string.format(
    "RESULT requests=%d status_200=%d status_207=%d status_503=%d status_other=%d errors=%d " ..
    "events_sent=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d duration_us=%d\n",
    summary.requests, t.c200, t.c207, t.c503, t.cother, errors, t.csent,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.duration))
end
