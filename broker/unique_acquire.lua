-- unique_acquire.lua - take (or confirm) a unique key's lock for a message this worker
-- holds, atomically with the check that it still holds it.
--
-- ARGV: prefix, wid, tag, queue, id, hash, ttl_ms, fixed
--   tag, queue  the delivery: <prefix>:inflight:<wid> must still hold <tag>
--   id          the message's id: the lock's value
--   hash        40 hex digits, SHA-1 of the unique key's text (broker_unique.h)
--   ttl_ms      how long the lock lasts at most (unique_for), milliseconds
--   fixed       "" or the message re-encoded with the id it was given (a message that
--               had none): written over the in-flight entry when the lock is taken, so
--               that a recovered copy comes back under the id that holds the lock
-- Returns {verdict, holder}:
--   'owner'      the lock is this id's: newly taken (SET NX PX ttl_ms), or already held
--                by the same id (a redelivery, a retry, a countdown coming due: the same
--                message; its expiry is left as it was, so a lock lasts at most
--                unique_for from the first time it was taken)
--   'duplicate'  another id holds it: holder is that id, the original
--   'gone'       the tag is no longer this worker's (it was presumed dead and its
--                messages recovered): nothing was written
--
-- The lock key is <prefix>:unique:<hash>. Taking it only while the in-flight entry is
-- there means a worker presumed dead cannot take a lock for a copy another worker now
-- runs; and because the lock names the message's id, not the worker, a copy that is
-- recovered after its worker was killed between this script and the task passes its own
-- lock. Keys are built from the prefix inside the script; not Redis Cluster compatible.

local prefix, wid, tag, queue, id, hash, ttl, fixed =
    ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local inflight = prefix .. ':inflight:' .. wid
if redis.call('HEXISTS', inflight, tag) == 0 then
    return {'gone', ''}
end
local key = prefix .. ':unique:' .. hash
local holder = redis.call('GET', key)
if holder and holder ~= id then
    return {'duplicate', holder}
end
if not holder then
    redis.call('SET', key, id, 'PX', ttl)
    if fixed and fixed ~= '' then
        redis.call('HSET', inflight, tag, queue .. '\n' .. fixed)
    end
end
return {'owner', id}
