-- wrk script used by bench/run for every row.
--
-- With BENCH_POST_BODY set, each request is a POST of that form body (the token-endpoint
-- rows); otherwise wrk's default GET. The request stays static either way (no request()
-- function), so wrk takes its fast path and the script costs nothing per request.
--
-- done() prints one machine-readable line; latencies in microseconds. wrk's own summary
-- (with --latency) stays above it for people.

local body = os.getenv("BENCH_POST_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
      .. "p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
