-- host_slot.lua - a counting semaphore per HTTP destination host shared by every worker of
-- the Redis (--http-host-concurrency): take a slot, or give one back.
--
-- ARGV: prefix, op, host, holder, limit, lease
--   op      "acquire" or "release"
--   holder  who holds the slot: the worker's id and a counter, unique over all workers
--   limit   acquire: the most holders at once (a whole number >= 1)
--   lease   acquire: seconds (fractions allowed) the slot stays held without a release
-- Returns {taken, wait, sec, usec}:
--   taken   acquire: 1 the slot is the holder's (or already was: its lease is renewed), 0
--           every slot is held; release: 1 the holder's slot was given back, 0 it held none
--   wait    acquire refused: seconds until the earliest lease runs out, as text (a slot
--           given back frees one sooner); "" otherwise
--   sec, usec  the server's TIME
--
-- State: <prefix>:slots:host:<host>, a sorted set of holders scored by the end of their
-- lease (milliseconds on the server's clock). A holder that never gives its slot back (a
-- worker SIGKILLed mid-request, a Redis unreachable at the release) loses it when its
-- lease runs out: every acquire first drops the leases that have run out, so no slot is
-- lost for longer than one lease. The key expires a second after its last lease. Keys are
-- built from the prefix inside the script; not Redis Cluster compatible.

local prefix, op, host, holder = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. ':slots:host:' .. host

local t = redis.call('TIME')
local sec, usec = t[1], t[2]

if op == 'release' then
    return {redis.call('ZREM', key, holder), '', sec, usec}
end

local limit = tonumber(ARGV[5])
local lease = math.ceil((tonumber(ARGV[6]) or 0) * 1000)
if not limit or limit < 1 or lease < 1 then
    return redis.error_reply('host_slot: bad limit or lease')
end
local now = tonumber(sec) * 1000 + math.floor(tonumber(usec) / 1000)

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, holder) or redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now + lease, holder)
    if redis.call('PTTL', key) < lease + 1000 then
        redis.call('PEXPIRE', key, lease + 1000)
    end
    return {1, '', sec, usec}
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, string.format('%.3f', (tonumber(first[2]) - now) / 1000), sec, usec}
