-- ARGV: prefix, task id, priority. 1 if it waits (and has the new priority now), else 0.
local id, priority = ARGV[2], tonumber(ARGV[3])
if redis.call('HEXISTS', RUNNING, id) == 1 then return 0 end
local e, json = entry(id)
if not e then return 0 end
-- Only the number changes, not the rest of the JSON ccs wrote ('"priority":' cannot occur
-- inside a JSON string: a quote there is escaped).
json = string.gsub(json, '"priority":%d+', '"priority":' .. priority, 1)
redis.call('HSET', ENTRIES, id, json)
e.priority = priority
local ready = ready_key(id)
if redis.call('ZSCORE', ready, id) then redis.call('ZADD', ready, score(e), id) end
return 1
