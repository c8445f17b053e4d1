-- ack.lua - acknowledge a batch of finished messages and store their results, in one
-- round trip.
--
-- ARGV: prefix, wid, then 5 values per message (8 for a "!" tag, below):
--   tag, result key, result JSON, ttl, channel
-- ttl: seconds the result is kept (SET key json EX ttl); 0 stores no result; a negative
-- ttl keeps it forever (--result-expires 0).
-- channel: where the result JSON is PUBLISHed (e.g. the result key itself, as pub/sub
-- names are separate from keys); empty string: no publish.
-- Returns one integer per message: 1 acked (and stored, published), 0 not ours.
--
-- The owner check comes first: only when HDEL <prefix>:inflight:<wid> <tag> removes the
-- entry does the script write anything. A worker that was stopped (SIGSTOP, a long GC, a
-- network partition) long enough to be declared dead has had its in-flight entries moved
-- back to their queues by another worker; its late ack then returns 0 and neither
-- overwrites the result the new owner may already have stored nor publishes a stale one.
--
-- A tag written "?<tag>" asks for a conditional store instead of an ack: store (and
-- publish) the result only while <tag> is still in this worker's in-flight hash, and
-- leave the entry there. That is how a STARTED result is written: sent late (a worker
-- stopped between starting a task and writing its STARTED, or an acker retrying a batch
-- after an outage longer than the heartbeat TTL), an unconditional SET could replace the
-- final result of the worker that took the message over, and the late worker's own final
-- ack is then refused, so the id would say STARTED for ever. Returns 1 stored, 0 not ours.
--
-- A tag written "!<tag>" is an ack that keeps the message for later (a countdown or eta
-- not reached yet, a retry): three more values follow the five, due, queue, text:
--   due    when it may run, Unix seconds on the Redis server's clock, as text (it is the
--          sorted set's score as given: never through a Lua number, whose %.14g would
--          round it)
--   queue  the queue it came from and goes back to
--   text   the message as it will run (a countdown already made an eta, the retry counted)
-- Only when HDEL removes the entry:
--   ZADD <prefix>:scheduled <due> "<tag>@<wid>\n<queue>\n<text>"
-- (the delivery tag and the worker id make the member unique, even after a Redis restored
-- from an old snapshot reissues tags, so that two identical messages are two members),
-- or, when the due time has already come by the server's TIME, LPUSH the text straight
-- onto its queue, where the mover (move_due.lua) would have put it. Then the
-- result is stored and published as for an ack (a RETRY result, or none). The entry
-- leaves the in-flight hash and enters the scheduled set in one atomic step: a worker
-- killed at any point leaves the old delivery (recovered, run again) or the kept one,
-- never both, never neither.
--
-- A tag written "~<tag>" is an ack (as a plain tag) that also releases a unique lock
-- (unique_acquire.lua): two more values follow the five, hash and id. Only when HDEL
-- removes the entry, <prefix>:unique:<hash> is deleted if its value is still id: the lock
-- of a message that finished goes in the same step as its ack, so there is no moment when
-- the message is done but a duplicate is still refused, nor one when the lock is gone but
-- the message not yet acked; a lock that expired and was taken by another message is that
-- message's and stays.
--
-- A tag written "+<tag>" is an ack (as a plain tag) that also does what follows the task
-- (Celery's callbacks, errbacks and chain, broker_celery.h): after the five values, a
-- count k, then k triples: op, key, text. Op "L": LPUSH text onto the list key (a message
-- published); op "R": store text as a result at key (ttl and guard as the entry's own
-- result, then PUBLISH). Only when HDEL removes the entry, so the next step of a chain is
-- published exactly when the step before is acked: a kill at any point leaves the step to
-- run again, or the next one published, never both and never neither.
--
-- A result key of Celery's ("celery-task-meta-<id>") is stored and published only when
-- no SUCCESS is stored there already: a Python worker, or an earlier delivery, may have
-- finished the task, and a late FAILURE, RETRY or STARTED must not replace that.
--
-- Keys are built from the prefix inside the script; not Redis Cluster compatible.

local prefix, wid = ARGV[1], ARGV[2]

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
local function queue_key(q)
    if string.sub(q, 1, 1) == '=' then
        return string.sub(q, 2)
    end
    return prefix .. ':queue:' .. q
end
local inflight = prefix .. ':inflight:' .. wid

local function celery_success_stored(key)
    if string.sub(key, 1, 17) ~= 'celery-task-meta-' then
        return false
    end
    local old = redis.pcall('GET', key)
    if type(old) ~= 'string' then
        return false
    end
    local ok, doc = pcall(cjson.decode, old)
    return ok and type(doc) == 'table' and doc.status == 'SUCCESS'
end
local out = {}
local now
local i = 3
while i <= #ARGV do
    local tag, key, json, channel = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
    local ttl = math.floor(tonumber(ARGV[i + 3]) or 0)
    local kind = string.sub(tag, 1, 1)
    local ours
    if kind == '?' then
        ours = redis.call('HEXISTS', inflight, string.sub(tag, 2)) == 1
    elseif kind == '!' then
        local real, due, queue, text = string.sub(tag, 2), ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
        ours = redis.call('HDEL', inflight, real) == 1
        if ours then
            if not now then
                local t = redis.call('TIME')
                now = tonumber(t[1]) + tonumber(t[2]) / 1e6
            end
            if tonumber(due) <= now then
                redis.call('LPUSH', queue_key(queue), text)
            else
                local member = real .. '@' .. wid .. '\n' .. queue .. '\n' .. text
                redis.call('ZADD', prefix .. ':scheduled', due, member)
            end
        end
        i = i + 3
    elseif kind == '~' then
        local hash, id = ARGV[i + 5], ARGV[i + 6]
        ours = redis.call('HDEL', inflight, string.sub(tag, 2)) == 1
        if ours then
            local lock = prefix .. ':unique:' .. hash
            if redis.call('GET', lock) == id then
                redis.call('DEL', lock)
            end
        end
        i = i + 2
    elseif kind == '+' then
        local k = tonumber(ARGV[i + 5]) or 0
        ours = redis.call('HDEL', inflight, string.sub(tag, 2)) == 1
        if ours then
            for f = 0, k - 1 do
                local op, fkey, text = ARGV[i + 6 + 3 * f], ARGV[i + 7 + 3 * f],
                    ARGV[i + 8 + 3 * f]
                if op == 'L' then
                    redis.call('LPUSH', fkey, text)
                elseif not celery_success_stored(fkey) then
                    if ttl > 0 then
                        redis.call('SET', fkey, text, 'EX', ttl)
                    else
                        redis.call('SET', fkey, text)
                    end
                    redis.call('PUBLISH', fkey, text)
                end
            end
        end
        i = i + 1 + 3 * k
    else
        ours = redis.call('HDEL', inflight, tag) == 1
    end
    if ours and celery_success_stored(key) then
        out[#out + 1] = 1
    elseif ours then
        if ttl > 0 then
            redis.call('SET', key, json, 'EX', ttl)
        elseif ttl < 0 then
            redis.call('SET', key, json)
        end
        if channel and channel ~= '' then
            redis.call('PUBLISH', channel, json)
        end
        out[#out + 1] = 1
    else
        out[#out + 1] = 0
    end
    i = i + 5
end
return out
