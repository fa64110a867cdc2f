-- ARGV: prefix, server id. Takes out the waiting entries pinned to this server (it stops: no
-- other server can run them) and returns their JSON.
local me = ARGV[2]
local now = now_ms()
local out = {}
local pins = redis.call('HGETALL', PINNED)
for i = 1, #pins, 2 do
  if pins[i + 1] == me then
    local json = drop_waiting(pins[i], now)
    if json then table.insert(out, json) else redis.call('HDEL', PINNED, pins[i]) end
  end
end
return out
