-- ARGV: prefix. {waiting, running} of the whole queue.
local running = redis.call('HLEN', RUNNING)
return {redis.call('HLEN', ENTRIES) - running, running}
