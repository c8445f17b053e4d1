-- dead_requeue.lua - put a dead letter's message back on its queue (workerctl dead
-- requeue), at most once however many requeue the same entry at the same time.
--
-- ARGV: prefix, entry (the exact text of the entry on <prefix>:dead), queue name, message.
-- Returns 1 when the entry was still there: one copy of it is removed and the message is
-- LPUSHed onto <prefix>:queue:<queue>, as a producer pushes a new one. Returns 0, and
-- touches nothing, when the entry is gone (dropped or requeued meanwhile).
--
-- The caller prepares the message from the entry (broker_dead_parse: the original text,
-- its redelivery count reset). Keys are built from the prefix inside the script; not
-- Redis Cluster compatible.

local prefix, entry, queue, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
-- queue_key(prefix, q) comes from lib_queue.lua, which the build puts in front.
if redis.call('LREM', prefix .. ':dead', 1, entry) == 1 then
    redis.call('LPUSH', queue_key(prefix, queue), message)
    return 1
end
return 0
