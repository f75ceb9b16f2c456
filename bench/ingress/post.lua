-- wrk script: POST the spec's popup payload, a new call_sid per request (per thread counter).
-- `wrk -s post.lua URL` sends as fast as the connections allow (closed loop);
-- `wrk -s post.lua URL -- RATE` sends RATE requests/s per thread on a fixed schedule: each
-- connection asks delay() before its next request and gets the next slot; a slot missed (every
-- connection busy) is sent as soon as a connection is free, so a stall is caught up, not dropped
-- from the offered load. Latency is wrk's own in both: from the request's write to its response.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } exopipe_timespec;
  int clock_gettime(int clock_id, exopipe_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("exopipe_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function paced(interval)
  local next_slot = nil
  return function()
    local t = now()
    next_slot = next_slot or t
    local wait = next_slot - t
    next_slot = next_slot + interval
    -- milliseconds; wrk truncates them to whole ones, the schedule itself does not drift
    return wait > 0 and wait * 1000 or 0
  end
end

function init(args)
  thread_id = tid
  if args[1] then
    -- wrk looks for delay() after init(), so only a paced run defines it
    delay = paced(1 / tonumber(args[1]))
  end
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"event":"incoming_call","call_sid":"bench_%d_%d","from":"+919876543210",' ..
    '"to":"sip:user@app.exotel.com","timestamp":"2024-06-15T10:30:00.000Z"}',
    thread_id, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
