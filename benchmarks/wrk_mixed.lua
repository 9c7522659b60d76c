-- wrk script: POST requests taken in turn from $WRK_REQUESTS_FILE, one "PATH<tab>JSON BODY" per line, so one
-- window spreads over several models; print one JSON line of results at the end (as wrk_post.lua does).
local requests_file = assert(io.open(os.getenv("WRK_REQUESTS_FILE"), "r"))
local requests, next_request = {}, 1
for line in requests_file:lines() do
  local path, body = line:match("^([^\t]+)\t(.*)$")
  requests[#requests + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
requests_file:close()

request = function()
  local this = requests[next_request]
  next_request = next_request % #requests + 1
  return this
end

done = function(summary, latency, _)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
