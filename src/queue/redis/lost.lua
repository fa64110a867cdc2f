-- ARGV: prefix. Claims what dead servers left: {kind, JSON, kind, JSON, ...} with kind
-- 'running' (taken by a server whose lease ran out) or 'abandoned' (waiting, pinned to a server
-- that is gone). Each is out of the queue once returned, so exactly one caller gets it.
local now = now_ms()
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', LEASES, id)
  redis.call('HDEL', RUNNING, id)
  local e, json = entry(id)
  forget(id)
  if e then
    local session = session_of(e)
    if session then release(session, now) end
    table.insert(out, 'running')
    table.insert(out, json)
  end
end
local pins = redis.call('HGETALL', PINNED)
local alive = {} -- server id -> whether its key exists (asked once per server)
for i = 1, #pins, 2 do
  local server = pins[i + 1]
  if alive[server] == nil then alive[server] = redis.call('EXISTS', server_key(server)) == 1 end
  if not alive[server] then
    local json = drop_waiting(pins[i], now)
    if json then
      table.insert(out, 'abandoned')
      table.insert(out, json)
    else
      redis.call('HDEL', PINNED, pins[i])
    end
  end
end
if #out > 0 then redis.call('PUBLISH', EVENTS, 'wake') end
return out
