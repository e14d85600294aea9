-- wrk script for bench/serve.py: POST /api/events, one `opened` event each with an id of its own
-- (run, thread, number), for the messages in the file named after `--` ("partner message" lines);
-- the API key comes second. Prints the figures as one JSON line when done.
local messages = {}
local n = 0
local threads = 0
local key, run  -- thread_number is set by setup() in each thread

setup = function(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

init = function(args)
  for line in io.lines(args[1]) do
    local partner, message = line:match("^(%S+) (%S+)$")
    messages[#messages + 1] = {partner, message}
  end
  key, run = args[2], args[3]
end

request = function()
  n = n + 1
  local m = messages[(n % #messages) + 1]
  local body = string.format(
    '{"id": "bench-%s-%d-%d", "type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "%s", "message": "%s"}',
    run, thread_number, n, m[1], m[2])
  return wrk.format("POST", "/api/events",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d, "bad_status": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
