-- move_due.lua - move the messages whose time has come from the scheduled set to their
-- queues, atomically: however many workers run this at once, each member is moved by
-- exactly one of them, once.
--
-- ARGV: prefix, n (most members moved per call), wid (the worker running this, for dead
-- letters).
-- Returns {moved, dead, next, sec, usec}:
--   moved  messages pushed onto their queues
--   dead   malformed members dead-lettered (only a hand edit makes one)
--   next   the lowest score left in the set, as Redis prints it ("" when the set is
--          empty): when the next message falls due, for the caller's timer
--   sec, usec  the server's TIME when the script ran (the caller's clock estimate)
--
-- <prefix>:scheduled is a sorted set scored by due time, Unix seconds on the Redis
-- server's clock (TIME here, never a worker's clock: hosts' clocks differ). ack.lua adds
-- its members as "<tag>@<wid>\n<queue>\n<text>": the unique part first (two identical
-- messages are two members), then the queue, then the message as it will run.
--
-- Due means score <= now. The bound is written from TIME's own digits: a Lua number
-- passed to redis.call becomes text through %.14g, which would round a microsecond time
-- of 16 digits and could move a message up to 50 us early.
--
-- The due members, earliest first, are LPUSHed onto their queues in that order, so that
-- the earliest is taken first, behind what was already waiting: a due message joins its
-- queue as a new one would. Then they are removed with ZREM. The script is atomic, so a
-- member is never on its queue and in the set at once, nor in neither; a second mover
-- running just after finds it gone. Batches (n) keep each call short: a caller that gets
-- n back calls again at once.
--
-- Keys are built from the prefix inside the script; not Redis Cluster compatible.

local prefix, n, wid = ARGV[1], tonumber(ARGV[2]) or 1000, ARGV[3] or ''

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
-- queue_key(prefix, q) comes from lib_queue.lua, which the build puts in front.
local key = prefix .. ':scheduled'
local t = redis.call('TIME')
local bound = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local due = redis.call('ZRANGEBYSCORE', key, '-inf', bound, 'LIMIT', 0, n)

local moved, dead = 0, 0
local pending_queue, pending = nil, {}

local function flush()
    if #pending > 0 then
        redis.call('LPUSH', queue_key(prefix, pending_queue), unpack(pending))
        pending = {}
    end
end

for _, member in ipairs(due) do
    local a = string.find(member, '\n', 1, true)
    local b = a and string.find(member, '\n', a + 1, true)
    local queue = b and string.sub(member, a + 1, b - 1)
    if not queue or queue == '' then
        redis.call('LPUSH', prefix .. ':dead', cjson.encode({
            message = member, truncated = false, message_bytes = #member,
            reason = 'malformed entry in the scheduled set', worker = wid,
            time = tonumber(t[1]) + tonumber(t[2]) / 1e6,
        }))
        dead = dead + 1
    else
        -- Consecutive members of one queue go in one LPUSH (in slices: unpack() of a
        -- huge table would overflow Lua's C stack); the order is kept either way.
        if queue ~= pending_queue or #pending >= 500 then
            flush()
            pending_queue = queue
        end
        pending[#pending + 1] = string.sub(member, b + 1)
        moved = moved + 1
    end
end
flush()

for i = 1, #due, 500 do
    redis.call('ZREM', key, unpack(due, i, math.min(i + 499, #due)))
end

local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {moved, dead, first[2] or '', t[1], t[2]}
