-- ARGV: prefix, server id, lease ms, prefer ms, how many ready entries to look at.
-- The JSON of the task this server takes now, or false.
local me, lease, prefer, scan = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGE', READY, 0, scan - 1)) do
  local e, json = entry(id)
  if not e then
    redis.call('ZREM', READY, id)
    redis.call('HDEL', READY_AT, id)
  else
    local pin = redis.call('HGET', PINNED, id)
    local mine = (not pin) or pin == me
    local session = session_of(e)
    if mine and session then
      -- The session's live process is on its home server: leave the turn to that server for
      -- a moment, if it is alive.
      local home = redis.call('GET', home_key(session))
      if home and home ~= me and redis.call('EXISTS', server_key(home)) == 1 then
        local ready_at = tonumber(redis.call('HGET', READY_AT, id) or '0')
        if now - ready_at < prefer then mine = false end
      end
    end
    if mine then
      redis.call('ZREM', READY, id)
      redis.call('HDEL', READY_AT, id)
      redis.call('HDEL', PINNED, id)
      redis.call('HSET', RUNNING, id, me)
      redis.call('ZADD', LEASES, now + lease, id)
      if session then redis.call('SET', home_key(session), me, 'PX', 86400000) end
      return json
    end
  end
end
return false
