-- ARGV: prefix, task id. 'running' (its server is told), 'pending' (out of the queue now) or
-- 'none'.
local id = ARGV[2]
if redis.call('HEXISTS', RUNNING, id) == 1 then
  -- The set outlives a lost message: the running server's heartbeat reads it.
  redis.call('SADD', CANCEL, id)
  redis.call('PUBLISH', EVENTS, 'cancel:' .. id)
  return 'running'
end
if drop_waiting(id, now_ms()) then return 'pending' end
return 'none'
