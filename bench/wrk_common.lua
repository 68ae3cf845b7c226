-- What the bench wrk scripts (bench/ingest/post_events.lua, bench/e2e/post_unique.lua) share:
-- numbering wrk's threads, counting answers by status, summing the counts over the threads.
-- Not a wrk script itself: a script loads it with dofile, by a path made from its own:
--
--   local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
--   local common = dofile(here .. "../wrk_common.lua")
--   setup, response = common.setup, common.response
--
-- wrk runs the script (and so this file) once in its main Lua state, for setup() and done(),
-- and once per thread, for init(), request() and response(); every state has its own copy of
-- the tables below. Counts travel from the threads to done() through wrk.thread:set/get.
local M = {}

local threads = {}
local counts = { s200 = 0, s207 = 0, s503 = 0, other = 0 }
local shown = 0

-- setup(thread), main state: numbers the threads 1, 2, ... (thread:get("id") in init()).
function M.setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- response(status, headers, body), thread state: counts 200, 207, 503 and the rest; writes
-- the first 3 answers other than 200 to stderr ("wrk: HTTP 503: {...}").
function M.response(status, headers, body)
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

-- In done(), main state: c200, c207, c503, cother (and any further names given, published
-- by the script itself) summed over the threads, and wrk's socket errors.
function M.totals(summary, ...)
  local t = { c200 = 0, c207 = 0, c503 = 0, cother = 0 }
  for _, k in ipairs({ ... }) do t[k] = 0 end
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (tonumber(th:get(k)) or 0) end
  end
  local e = summary.errors
  return t, e.connect + e.read + e.write + e.timeout
end

-- The request path: the URL's, or /events.
function M.path()
  if wrk.path and wrk.path ~= "" and wrk.path ~= "/" then return wrk.path end
  return "/events"
end

return M
