-- rate_limit.lua - a rate limit shared by every worker of the Redis (GCRA), and the move of
-- a message that must wait for its turn into the scheduled set, in one atomic step.
--
-- ARGV: prefix, wid, kind, name, rate, tag, queue, text
--   kind   "task" (a --rate-limit, name is the task) or "host" (--http-host-rate, name is
--          the destination host)
--   rate   the limit as "<number>/<s|m|h>"; "" reads it from the hash
--          <prefix>:rate_limits (field: the task name), so that a change made there
--          (workerctl rate-limit) applies to the very next check of every worker
--   tag    the message's delivery tag in <prefix>:inflight:<wid>; "" only checks (and
--          takes a turn when there is one), moving nothing
--   queue, text  with a tag: the message's queue, and its text as it will run again
-- Returns {verdict, due, sec, usec}:
--   verdict  1 run now (the turn is taken); 0 over the rate: the message was moved from
--            the in-flight hash to the scheduled set, due at `due`; 2 over the rate, check
--            only (no tag): the caller waits until `due`; 3 no limit set; -1 the tag is no
--            longer this worker's (nothing was touched)
--   due      the due time as text ("" unless 0 or 2), Unix seconds on the server's clock
--   sec, usec  the server's TIME
--
-- The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one
-- time): with T = 1/rate, a start is allowed when tat - TOLERANCE <= now, and then
-- tat = max(tat, now) + T. Over any window of W seconds at most rate * (W + TOLERANCE) + 1
-- starts happen, whatever the number of workers: the state lives here, not in a worker.
-- The small tolerance absorbs the lateness of a message coming back from the scheduled
-- set (the mover, the fetch), so that lateness never adds up into a lower rate.
--
-- A message over the rate is given a turn ahead: `tail` is the last turn handed out, the
-- message is due at max(tail + T, the next free turn, now) and tail moves there, so that
-- a thousand throttled messages come back one by one, not all together at the next turn.
-- When it comes back it is checked again (it holds no reservation): a rate lowered
-- meanwhile sends it round again. Turns are handed out at most HORIZON (or two periods)
-- ahead; the rest come back spread over the horizon after that and are checked again, so
-- a rate raised with workerctl is followed within two HORIZONs.
--
-- Exactly one place: the tag is checked first (a worker presumed dead touches nothing);
-- HDEL from the in-flight hash and ZADD to <prefix>:scheduled happen in this script, with
-- the member format of ack.lua ("<tag>@<wid>\n<queue>\n<text>"), so move_due.lua puts it
-- back on its queue when due. A message waiting for its turn is not a retry: its text
-- (and so its `retries`) is the caller's, and no result is written.
--
-- State: <prefix>:rate:<kind>:<name>, a hash {tat, tail}, expiring a minute after both lie
-- in the past. Keys are built from the prefix inside the script; not Redis Cluster
-- compatible.

local TOLERANCE = 0.05
local HORIZON = 1.0

local prefix, wid, kind, name, rate = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local tag, queue, text = ARGV[6] or '', ARGV[7] or '', ARGV[8] or ''

local t = redis.call('TIME')
local sec, usec = t[1], t[2]

local inflight = prefix .. ':inflight:' .. wid
if tag ~= '' and redis.call('HEXISTS', inflight, tag) == 0 then
    return {-1, '', sec, usec}
end

if rate == '' then
    rate = redis.call('HGET', prefix .. ':rate_limits', name)
    if not rate then
        return {3, '', sec, usec}
    end
end
-- The same form the C parser (broker_rate_parse) accepts; anything else (a hand edit)
-- is no limit rather than an error on every message.
local num, unit = string.match(rate, '^(%d+%.?%d*)/([smh])$')
if not num then
    num, unit = string.match(rate, '^(%.%d+)/([smh])$')
end
local per = num and tonumber(num)
if not per or per <= 0 then
    return {3, '', sec, usec}
end
local period = ({s = 1, m = 60, h = 3600})[unit] / per

local now = tonumber(sec) + tonumber(usec) / 1e6
local key = prefix .. ':rate:' .. kind .. ':' .. name
local state = redis.call('HMGET', key, 'tat', 'tail')
local tat = tonumber(state[1]) or 0
local tail = tonumber(state[2]) or 0

local function save()
    redis.call('HSET', key, 'tat', string.format('%.6f', tat), 'tail', string.format('%.6f', tail))
    local last = math.max(tat, tail)
    redis.call('EXPIRE', key, math.max(1, math.ceil(last - now)) + 60)
end

if tat - TOLERANCE <= now then
    tat = math.max(tat, now) + period
    save()
    return {1, '', sec, usec}
end

local due = math.max(tail + period, tat - TOLERANCE, now)
local horizon = math.max(HORIZON, 2 * period)
if due > now + horizon then
    -- Spread over the next horizon by the tag (tags are a counter: times the golden ratio,
    -- they fall evenly), so that the messages looked at again do not all come back at
    -- once and delay, on their queue, the ones whose turn it is.
    local spread = ((tonumber(tag) or 0) * 0.6180339887) % 1
    due = now + horizon * (1 + spread)
else
    tail = due
end
save()
local dues = string.format('%.6f', due)
if tag == '' then
    return {2, dues, sec, usec}
end
redis.call('HDEL', inflight, tag)
redis.call('ZADD', prefix .. ':scheduled', dues, tag .. '@' .. wid .. '\n' .. queue .. '\n' .. text)
return {0, dues, sec, usec}
