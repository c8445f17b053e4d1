-- requeue.lua - a worker puts its own unfinished messages back (warm or cold shutdown).
--
-- ARGV: prefix, wid, what, then tags, then queue names:
--   what = "all":  every in-flight entry goes back (cold shutdown); no tags follow.
--   what = <k>:    the k tags that follow go back (warm shutdown: what did not finish);
--                  unknown tags (already acked or recovered) are skipped.
--   The queue names after the tags name landing lists (<prefix>:landing:<wid>:<queue>)
--   to drain back too, in both modes: a blocking BLMOVE may have dropped a message there
--   just before shutdown.
-- Returns how many messages went back.
--
-- Like recover.lua, entries go back to the RIGHT end of their queues (oldest tag
-- rightmost, next to be taken) but, unlike it, WITHOUT counting a redelivery: a clean
-- shutdown is not the message's fault. An entry that is not "<queue>\n<raw>" (only a hand
-- edit makes one) is dead-lettered, never dropped. Keys are built from the prefix inside
-- the script; not Redis Cluster compatible.

local prefix, wid, what = ARGV[1], ARGV[2], ARGV[3]
local inflight = prefix .. ':inflight:' .. wid
local moved = 0

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
-- queue_key(prefix, q) comes from lib_queue.lua, which the build puts in front.

local items, first_queue = {}, 4
if what == 'all' then
    local flat = redis.call('HGETALL', inflight)
    for i = 1, #flat, 2 do
        items[#items + 1] = {tonumber(flat[i]) or 0, flat[i], flat[i + 1]}
    end
else
    local k = tonumber(what) or 0
    for i = 4, 3 + k do
        local value = redis.call('HGET', inflight, ARGV[i])
        if value then
            items[#items + 1] = {tonumber(ARGV[i]) or 0, ARGV[i], value}
        end
    end
    first_queue = 4 + k
end

for i = first_queue, #ARGV do
    local queue = ARGV[i]
    local landing = prefix .. ':landing:' .. wid .. ':' .. queue
    while redis.call('LMOVE', landing, queue_key(prefix, queue), 'LEFT', 'RIGHT') do
        moved = moved + 1
    end
end

table.sort(items, function(a, b) return a[1] > b[1] end)
for _, item in ipairs(items) do
    local value = item[3]
    local nl = string.find(value, '\n', 1, true)
    if nl then
        redis.call('RPUSH', queue_key(prefix, string.sub(value, 1, nl - 1)),
            string.sub(value, nl + 1))
        moved = moved + 1
    else
        local t = redis.call('TIME')
        redis.call('LPUSH', prefix .. ':dead', cjson.encode({
            message = value, truncated = false, message_bytes = #value,
            reason = 'in-flight entry without a queue name', worker = wid,
            time = tonumber(t[1]) + tonumber(t[2]) / 1e6,
        }))
    end
    redis.call('HDEL', inflight, item[2])
end
return moved
