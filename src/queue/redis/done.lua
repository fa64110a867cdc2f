-- ARGV: prefix, task id, server id. 1 if it ran here and is out of the queue now; 0 if it was
-- not running here (a lost() elsewhere settled it already).
local id, me = ARGV[2], ARGV[3]
if redis.call('HGET', RUNNING, id) ~= me then return 0 end
redis.call('HDEL', RUNNING, id)
redis.call('ZREM', LEASES, id)
local session = session_of(entry(id))
forget(id)
if session then
  release(session, now_ms())
  redis.call('PUBLISH', EVENTS, 'wake')
end
return 1
