-- wrk script of the heartbeat benchmark: args after `--` are [method [tokens file [body pattern]]]. Each request
-- carries a random bearer token of the file (none without one, so /health pays the same client-side cost);
-- answers whose body lacks the Lua pattern are counted as "unexpected" (a 200 saying the session stopped is
-- no heartbeat served). done() prints one parseable line: "BENCH_RESULT {json}".

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("id", thread_count)
   table.insert(threads, thread)
end

function init(args)
   method = args[1] or "GET"
   tokens = {}
   expect = args[3]
   non2xx = 0
   unexpected = 0
   if args[2] and args[2] ~= "" then
      for line in io.lines(args[2]) do
         if line ~= "" then
            tokens[#tokens + 1] = line
         end
      end
      assert(#tokens > 0, "no tokens in " .. args[2])
   end
   -- A seed per thread: threads seeded alike would send the same tokens in lockstep.
   math.randomseed(os.time() * 100 + id)
end

function request()
   if #tokens == 0 then
      return wrk.format(method)
   end
   -- A fresh table each time: wrk.format adds Host to the table it is given.
   return wrk.format(method, nil, { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end

function response(status, headers, body)
   -- wrk's own error count only sees status >= 400; the benchmark must not count a redirect as served.
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   elseif expect and not string.find(body, expect) then
      unexpected = unexpected + 1
   end
end

function done(summary, latency, requests)
   local total_non2xx, total_unexpected = 0, 0
   for _, thread in ipairs(threads) do
      total_non2xx = total_non2xx + thread:get("non2xx")
      total_unexpected = total_unexpected + thread:get("unexpected")
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
         .. '"max_us": %d, "non2xx": %d, "unexpected": %d, "connect": %d, "read": %d, "write": %d, '
         .. '"timeout": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
      latency.max, total_non2xx, total_unexpected, errors.connect, errors.read, errors.write, errors.timeout
   ))
end
