-- ack.lua - acknowledge a batch of finished messages and store their results, in one
-- round trip.
--
-- ARGV: prefix, wid, then 5 values per message:
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
-- Keys are built from the prefix inside the script; not Redis Cluster compatible.

local prefix, wid = ARGV[1], ARGV[2]
local inflight = prefix .. ':inflight:' .. wid
local out = {}
for i = 3, #ARGV, 5 do
    local tag, key, json, channel = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
    local ttl = math.floor(tonumber(ARGV[i + 3]) or 0)
    local ours
    if string.sub(tag, 1, 1) == '?' then
        ours = redis.call('HEXISTS', inflight, string.sub(tag, 2)) == 1
    else
        ours = redis.call('HDEL', inflight, tag) == 1
    end
    if ours then
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
end
return out
