-- wrk script for the ingest benchmarks: every request POSTs new leads with a unique email and phone.
--
--   wrk -s scripts/bench/ingest.lua <url> -- <path> <api key or -> <base> <batch size> <wrk threads>
--
-- Lead number g = base + counter * threads + thread id, so numbers never repeat across threads, and the
-- caller gives each wrk run its own base (runs are at most 1,000,000 requests apart). A batch size of 0
-- sends one lead object; N > 0 sends {"leads": [N leads]}. done() prints one JSON line with the exact
-- figures (latencies in microseconds), which the benchmark reads instead of wrk's rounded text.

local threads = {}
local path, api_key, base, batch = "/", nil, 0, 0
local counter, my_thread, thread_count = 0, 0, 1

-- US numbers that libphonenumber accepts as valid: 8 area codes x 800 exchanges x 10,000 lines.
local areas = { 212, 312, 415, 617, 646, 718, 917, 213 }

function setup(thread)
  thread:set("thread_id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  path = args[1] or "/"
  if args[2] and args[2] ~= "-" then api_key = args[2] end
  base = tonumber(args[3]) or 0
  batch = tonumber(args[4]) or 0
  -- setup() set the global thread_id in this thread's Lua state.
  my_thread = tonumber(_G.thread_id) or 0
  thread_count = tonumber(args[5]) or 1
end

local function lead(g)
  local area = areas[(math.floor(g / 8000000) % #areas) + 1]
  local rest = g % 8000000
  local phone = string.format("+1%d%03d%04d", area, 200 + math.floor(rest / 10000), rest % 10000)
  return string.format(
    '{"full_name":"Bench Lead %d","email":"lead-%d@bench.example.com","phone":"%s",' ..
      '"utm_source":"bench","utm_medium":"cpc","utm_campaign":"spring","consent":true,' ..
      '"custom":{"plan":"pro","seats":%d}}',
    g, g, phone, g % 50)
end

local function next_number()
  counter = counter + 1
  return base + counter * thread_count + my_thread
end

function request()
  local body
  if batch > 0 then
    local items = {}
    for i = 1, batch do items[i] = lead(next_number()) end
    body = '{"leads":[' .. table.concat(items, ",") .. ']}'
  else
    body = lead(next_number())
  end
  local headers = { ["Content-Type"] = "application/json" }
  if api_key then headers["X-API-Key"] = api_key end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"timeouts":%d,"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,' ..
      '"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
