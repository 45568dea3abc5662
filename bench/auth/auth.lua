-- wrk script of bench.py: each request carries a random bearer token read from the file named after `--`
-- (no Authorization header without one, so /health pays the same client-side cost); done() prints one
-- parseable line: "BENCH_RESULT {json}".

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("id", thread_count)
   table.insert(threads, thread)
end

function init(args)
   tokens = {}
   non2xx = 0
   if args[1] then
      for line in io.lines(args[1]) do
         if line ~= "" then
            tokens[#tokens + 1] = line
         end
      end
      assert(#tokens > 0, "no tokens in " .. args[1])
   end
   -- A seed per thread: threads seeded alike would send the same tokens in lockstep.
   math.randomseed(os.time() * 100 + id)
end

function request()
   if #tokens == 0 then
      return wrk.format()
   end
   -- A fresh table each time: wrk.format adds Host to the table it is given.
   return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end

function response(status, headers, body)
   -- wrk's own error count only sees status >= 400; the benchmark must not count a redirect as served.
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local total_non2xx = 0
   for _, thread in ipairs(threads) do
      total_non2xx = total_non2xx + thread:get("non2xx")
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
         .. '"max_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
      latency.max, total_non2xx, errors.connect, errors.read, errors.write, errors.timeout
   ))
end
