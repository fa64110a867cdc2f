-- ARGV: prefix, task id, entry JSON, pinned server id or ''. 1 if queued, 0 if held already.
local id, json, pin = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', ENTRIES, id) == 1 then return 0 end
redis.call('HSET', ENTRIES, id, json)
if pin ~= '' then redis.call('HSET', PINNED, id, pin) end
local e = cjson.decode(json)
local session = session_of(e)
if session and redis.call('SISMEMBER', OCCUPIED, session) == 1 then
  redis.call('ZADD', later_key(session), e.seq, id)
else
  if session then redis.call('SADD', OCCUPIED, session) end
  make_ready(id, e, now_ms())
end
redis.call('PUBLISH', EVENTS, 'wake')
return 1
