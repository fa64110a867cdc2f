-- ARGV: prefix, start. A new arrival number, never below start + 1 (the highest the store holds).
local key = P .. 'queue:seq'
local start = tonumber(ARGV[2])
if tonumber(redis.call('GET', key) or '0') < start then redis.call('SET', key, ARGV[2]) end
return redis.call('INCR', key)
