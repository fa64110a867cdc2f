-- ARGV: prefix, server id. A server starts again under its id (same host and port): what its
-- previous life held is out of the queue at once (tasks it ran, waiting tasks pinned to it), so
-- the start's recovery ends them as after a local crash. Returns how many it took out.
local me = ARGV[2]
local now = now_ms()
local n = 0
local running = redis.call('HGETALL', RUNNING)
for i = 1, #running, 2 do
  if running[i + 1] == me then
    local id = running[i]
    redis.call('ZREM', LEASES, id)
    redis.call('HDEL', RUNNING, id)
    local e = entry(id)
    forget(id)
    local session = session_of(e)
    if session then release(session, now) end
    n = n + 1
  end
end
local pins = redis.call('HGETALL', PINNED)
for i = 1, #pins, 2 do
  if pins[i + 1] == me then
    if drop_waiting(pins[i], now) then n = n + 1 else redis.call('HDEL', PINNED, pins[i]) end
  end
end
if n > 0 then redis.call('PUBLISH', EVENTS, 'wake') end
return n
