-- wrk script: POST the spec's popup payload, a new call_sid per request (per thread counter).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid
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
