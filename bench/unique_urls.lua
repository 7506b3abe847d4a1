-- Ask every URL of a list once: thread k of n takes lines k, k + n, k + 2n, ... in order.
--
--   wrk -t N -c C -d LIMIT --latency -s unique_urls.lua http://host:port -- FILE N HOLDBACK DIR
--
-- A thread stops HOLDBACK responses before the end of its share (HOLDBACK = C / N, its
-- connections), so that no connection is ever handed a URL twice; it then writes DIR/done-k.
-- NOTE: wrk sleeps for the whole -d even when every thread has stopped, and then divides by
-- it, so the caller sends SIGINT once all the done files exist, and the rate is taken from
-- the line that done() prints: responses counted over the time from the first request to the
-- last counted response, on CLOCK_MONOTONIC.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } unique_urls_timespec;
int clock_gettime(int clock, unique_urls_timespec *now);
]])
local clock = ffi.new("unique_urls_timespec")

local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local threads = {}
local started = 0

function setup(thread)
  thread:set("tid", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads, holdback = args[1], tonumber(args[2]), tonumber(args[3])
  marker = args[4] .. "/done-" .. tid
  urls = {}
  local line = 0
  for url in io.lines(file) do
    if line % nthreads == tid then
      urls[#urls + 1] = url
    end
    line = line + 1
  end
  goal = math.max(1, #urls - holdback)
  sent, got, counted, bad, first, last = 0, 0, 0, 0, 0, 0
end

function request()
  if sent == 0 then
    first = now()
  end
  sent = sent + 1
  return wrk.format("GET", urls[math.min(sent, #urls)])
end

function response(status, headers, body)
  got = got + 1
  if status ~= 200 then
    bad = bad + 1
  end
  if got == goal then
    counted, last = got, now()
    local done = io.open(marker, "w")
    done:write("done\n")
    done:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, failed, t0, t1 = 0, 0, math.huge, 0
  for _, thread in ipairs(threads) do
    local n, t_last = thread:get("counted"), thread:get("last")
    if n == 0 then
      -- the caller gave up waiting for this thread: count what it got until now
      n, t_last = thread:get("got"), now()
    end
    total = total + n
    failed = failed + thread:get("bad")
    t0 = math.min(t0, thread:get("first"))
    t1 = math.max(t1, t_last)
  end
  io.write(string.format("unique: %d responses, %d not 200, %.6f s\n", total, failed, t1 - t0))
end
