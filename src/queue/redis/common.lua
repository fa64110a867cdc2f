-- Shared by every script of the Redis queue (prepended to each). ARGV[1] is the key prefix.
-- Keys (under the prefix):
--   queue:seq            counter of arrival numbers
--   queue:entries        HASH task id -> entry JSON (waiting and running tasks)
--   queue:ready          ZSET task id -> score (priority desc, then seq asc): takeable now by
--                        any server
--   queue:ready:<id>     the same, for entries only server <id> takes (pinned to it): kept
--                        apart so that many of them never hide the others' work from a server
--   queue:ready_at       HASH task id -> ms when it became ready (the live-process preference)
--   queue:later:<s>      ZSET task id -> seq: turns of session <s> waiting for an earlier one
--   queue:occupied       SET sessions with a turn ready or running
--   queue:pinned         HASH task id -> server id, for waiting entries only that server takes
--   queue:running        HASH task id -> server id running it
--   queue:leases         ZSET task id -> ms its server's claim runs out
--   queue:cancel         SET running task ids their server must cancel
--   queue:home:<s>       server id that last ran a turn of session <s> (has its live process)
--   queue:events         pub/sub channel: "wake", "cancel:<task id>"
--   server:<id>          the pid of server <id> (host:port), while it is alive (its heartbeat
--                        renews it)
-- Times come from Redis's clock (TIME), so the servers' clocks do not matter.
local P = ARGV[1]
local ENTRIES, READY, READY_AT = P .. 'queue:entries', P .. 'queue:ready', P .. 'queue:ready_at'
local OCCUPIED, PINNED, RUNNING = P .. 'queue:occupied', P .. 'queue:pinned', P .. 'queue:running'
local LEASES, CANCEL, EVENTS = P .. 'queue:leases', P .. 'queue:cancel', P .. 'queue:events'
local function later_key(session) return P .. 'queue:later:' .. session end
local function home_key(session) return P .. 'queue:home:' .. session end
local function server_key(id) return P .. 'server:' .. id end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The entry of a task (decoded, and its JSON as stored), or nil.
local function entry(id)
  local json = redis.call('HGET', ENTRIES, id)
  if not json then return nil, nil end
  return cjson.decode(json), json
end

local function session_of(e)
  if e == nil or e.session_id == nil or e.session_id == cjson.null then return nil end
  return e.session_id
end

-- Priority 10 first, then the lowest seq (exact while seq < 2^44).
local function score(e) return (11 - e.priority) * 17592186044416 + e.seq end

-- The ready set of a task: its server's own when it is pinned, else the shared one.
local function ready_key(id)
  local pin = redis.call('HGET', PINNED, id)
  if pin then return READY .. ':' .. pin end
  return READY
end

local function make_ready(id, e, now)
  redis.call('ZADD', ready_key(id), score(e), id)
  redis.call('HSET', READY_AT, id, now)
end

-- A turn of the session ended or left: its next turn becomes ready, else the session is free.
local function release(session, now)
  while true do
    local next_id = redis.call('ZRANGE', later_key(session), 0, 0)[1]
    if not next_id then
      redis.call('SREM', OCCUPIED, session)
      return
    end
    redis.call('ZREM', later_key(session), next_id)
    local e = entry(next_id)
    if e then
      make_ready(next_id, e, now)
      return
    end
  end
end

-- Everything the queue keeps of a task, but its place in ready/later/running.
local function forget(id)
  redis.call('HDEL', ENTRIES, id)
  redis.call('HDEL', READY_AT, id)
  redis.call('HDEL', PINNED, id)
  redis.call('SREM', CANCEL, id)
end

-- Takes a waiting task out (its session's next turn may go if it was the session's head).
-- Returns its JSON, or nil when it does not wait.
local function drop_waiting(id, now)
  local e, json = entry(id)
  if not e or redis.call('HEXISTS', RUNNING, id) == 1 then return nil end
  local session = session_of(e)
  local head = redis.call('ZREM', ready_key(id), id) == 1
  if session and not head then redis.call('ZREM', later_key(session), id) end
  forget(id)
  if head and session then release(session, now) end
  redis.call('PUBLISH', EVENTS, 'wake')
  return json
end

