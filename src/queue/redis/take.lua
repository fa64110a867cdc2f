-- ARGV: prefix, server id, lease ms, prefer ms, how many shared ready entries to look at.
-- The JSON of the task this server takes now, or false: the best (priority, then arrival) of
-- the head of its own pinned entries and the first shared entry it may take now.
local me, lease, prefer, scan = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()

-- The first shared entry this server may take now, with its score.
local function first_shared()
  local ids = redis.call('ZRANGE', READY, 0, scan - 1, 'WITHSCORES')
  for i = 1, #ids, 2 do
    local id = ids[i]
    local e = entry(id)
    if not e then
      redis.call('ZREM', READY, id)
      redis.call('HDEL', READY_AT, id)
    else
      local mine = true
      local session = session_of(e)
      if session then
        -- The session's live process is on its home server: leave the turn to that server for
        -- a moment, if it is alive.
        local home = redis.call('GET', home_key(session))
        if home and home ~= me and redis.call('EXISTS', server_key(home)) == 1 then
          local ready_at = tonumber(redis.call('HGET', READY_AT, id) or '0')
          if now - ready_at < prefer then mine = false end
        end
      end
      if mine then return id, tonumber(ids[i + 1]) end
    end
  end
  return nil, nil
end

local own_ready = READY .. ':' .. me
local own
repeat -- the head of this server's own entries (one whose entry is gone is dropped)
  own = redis.call('ZRANGE', own_ready, 0, 0, 'WITHSCORES')
  local stale = own[1] and redis.call('HEXISTS', ENTRIES, own[1]) == 0
  if stale then
    redis.call('ZREM', own_ready, own[1])
    redis.call('HDEL', READY_AT, own[1])
  end
until not stale
local id, shared_score = first_shared()
local ready = READY
if own[1] and (not id or tonumber(own[2]) < shared_score) then
  id, ready = own[1], own_ready
end
if not id then return false end
local e, json = entry(id)
redis.call('ZREM', ready, id)
redis.call('HDEL', READY_AT, id)
redis.call('HDEL', PINNED, id)
redis.call('HSET', RUNNING, id, me)
redis.call('ZADD', LEASES, now + lease, id)
local session = session_of(e)
if session then redis.call('SET', home_key(session), me, 'PX', 86400000) end
return json
