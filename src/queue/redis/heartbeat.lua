-- ARGV: prefix, server id, lease ms, the server's pid, ids of the tasks the server runs.
-- Renews the server's liveness and its tasks' leases. {ids no longer its own (their lease ran
-- out and another server settled them), ids to cancel}.
local me, lease = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call('SET', server_key(me), ARGV[4], 'PX', lease)
local gone, cancel = {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  if redis.call('HGET', RUNNING, id) == me then
    redis.call('ZADD', LEASES, now + lease, id)
    if redis.call('SISMEMBER', CANCEL, id) == 1 then table.insert(cancel, id) end
  else
    table.insert(gone, id)
  end
end
return {gone, cancel}
