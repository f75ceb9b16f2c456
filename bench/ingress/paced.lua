-- wrk script: post.lua's requests, sent on a fixed schedule of RATE requests/s per thread
-- (`wrk -s paced.lua URL -- RATE`). Each connection asks delay() before its next request and
-- gets the next free slot of the schedule; a slot missed (every connection busy) is sent as
-- soon as a connection is free, so a stall is caught up, not dropped from the offered load.
-- Latency is wrk's own: from the request's write to its response.
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
local interval = 0
local next_slot = nil

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid
  interval = 1 / tonumber(args[1])
end

function delay()
  local t = now()
  if next_slot == nil then
    next_slot = t
  end
  local wait = next_slot - t
  next_slot = next_slot + interval
  if wait < 0 then
    return 0
  end
  return wait * 1000 -- milliseconds; wrk truncates to whole ms, the schedule itself does not drift
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"event":"incoming_call","call_sid":"paced_%d_%d","from":"+919876543210",' ..
    '"to":"sip:user@app.exotel.com","timestamp":"2024-06-15T10:30:00.000Z"}',
    thread_id, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
