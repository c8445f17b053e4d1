-- beat_fire.lua - enqueue one run of a periodic (beat) entry, exactly once however many
-- workers run the same beat file.
--
-- ARGV: prefix, name (the entry), tick (its due time, whole unix seconds), queue ("": mark
-- the tick as done without enqueueing: a missed tick that catch_up drops), message.
-- Returns {status, sec, usec}:
--   status  1 the message was pushed; 0 this tick or a later one was already fired (by
--           another worker, or by this one before an unknown outcome); -1 the tick is not
--           due yet by the server's clock (the caller's estimate ran ahead): nothing done
--   sec, usec  the server's TIME
--
-- <prefix>:beat is a hash, entry name -> the last tick fired (or dropped). A tick fires
-- only when it is later than that mark, and the mark is set and the message pushed in the
-- same script, so each tick of each entry is pushed at most once, and the mark is also
-- what a worker reads after a downtime to see which ticks were missed. Ticks only move
-- forward: a worker firing an older tick after a newer one finds it done. The mark has no
-- TTL: it is one field per entry, and forgetting it would replay or drop a catch-up.
--
-- Due means tick <= TIME's seconds; the tick is whole seconds, so that is tick <= now.
-- Keys are built from the prefix inside the script; not Redis Cluster compatible.

local prefix, name, tick, queue, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = redis.call('TIME')
local n = tonumber(tick)
if not n or n > tonumber(t[1]) then
    return {-1, t[1], t[2]}
end
local key = prefix .. ':beat'
local last = tonumber(redis.call('HGET', key, name) or '')
if last and last >= n then
    return {0, t[1], t[2]}
end
redis.call('HSET', key, name, tick)
if queue ~= '' then
    redis.call('LPUSH', prefix .. ':queue:' .. queue, msg)
end
return {1, t[1], t[2]}
