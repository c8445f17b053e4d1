-- fetch.lua - move up to N ready messages into a worker's in-flight hash, atomically.
--
-- ARGV: prefix, wid, n, floor, queue1, queue2, ... (queues in strict priority order;
-- floor is the highest delivery tag the worker has been given, 0 for none)
-- Returns a flat array: tag1, queue1, raw1, tag2, queue2, raw2, ... (at most n triples;
-- empty when nothing is ready).
--
-- For each queue in order, until n messages are taken: first the worker's landing list
-- for that queue (<prefix>:landing:<wid>:<queue>, where a blocking
--   BLMOVE <prefix>:queue:<q> <prefix>:landing:<wid>:<q> RIGHT LEFT <timeout>
-- on the worker's own connection drops a message while the queues are empty), then the
-- queue itself. Both are read from the right: producers LPUSH, so RPOP is FIFO, and the
-- BLMOVE above keeps the landing list in the same order.
--
-- Every taken message gets a delivery tag, the decimal text of a number from one INCRBY on
-- <prefix>:seq per batch (tags never repeat, and sort by fetch order; the counter is first
-- raised to floor if it is below: a Sentinel failover, or a restart from an older
-- snapshot, can roll it back under tags the worker still holds, and handing those out
-- again would give two of its deliveries one tag), and is stored as
-- HSET <prefix>:inflight:<wid> <tag> "<queue>\n<raw>". Because the script is atomic, each
-- message is always in exactly one place: its queue, a landing list, or an in-flight hash.
--
-- A queue named in the set <prefix>:paused (read once per call) is skipped: its messages
-- stay queued until it is resumed. A message a waker's BLMOVE dropped into this worker's
-- landing list for it (the BLMOVE began before the pause, or raced it) goes back to the
-- tail of the queue it came from, where it was the oldest, so it runs first on resume and
-- nothing of a paused queue is ever held or run.
--
-- When it takes anything, the script also (re)registers the worker in the <prefix>:workers
-- hash (wid -> comma-separated queue names), so that an in-flight entry is never left
-- where recovery cannot find it, even for a worker that was presumed dead, recovered, and
-- then woke up and fetched again.
--
-- Keys are built from the prefix inside the script (not passed in KEYS), so this is not
-- Redis Cluster compatible; workerd targets one Redis (with Sentinel for failover).

local prefix, wid, n, floor = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local taken_queue, taken_raw = {}, {}

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
-- queue_key(prefix, q) comes from lib_queue.lua, which the build puts in front.

local function take(key, queue, want)
    local got = redis.call('RPOP', key, want)
    if got then
        for _, raw in ipairs(got) do
            taken_queue[#taken_queue + 1] = queue
            taken_raw[#taken_raw + 1] = raw
        end
    end
end

-- A paused key that is not a set (a hand edit) pauses nothing rather than stopping
-- every fetch.
local paused = {}
local members = redis.pcall('SMEMBERS', prefix .. ':paused')
if not members.err then
    for _, q in ipairs(members) do
        paused[q] = true
    end
end

local queues = {}
for i = 5, #ARGV do
    local q = ARGV[i]
    queues[#queues + 1] = q
    if paused[q] then
        -- The landing list is pushed on the left (BLMOVE ... RIGHT LEFT): its leftmost is
        -- the newest, which goes back first so that the oldest ends up at the tail.
        local landing = prefix .. ':landing:' .. wid .. ':' .. q
        while redis.call('LMOVE', landing, queue_key(prefix, q), 'LEFT', 'RIGHT') do
        end
    else
        if #taken_raw < n then
            take(prefix .. ':landing:' .. wid .. ':' .. q, q, n - #taken_raw)
        end
        if #taken_raw < n then
            take(queue_key(prefix, q), q, n - #taken_raw)
        end
        -- A Celery queue's priority lists, as kombu's Redis transport names them: lower
        -- steps first, after the plain list (step 0).
        if string.sub(q, 1, 1) == '=' then
            for _, step in ipairs({3, 6, 9}) do
                if #taken_raw < n then
                    take(queue_key(prefix, q) .. '\6\22' .. step, q, n - #taken_raw)
                end
            end
        end
    end
end

local count = #taken_raw
if count == 0 then
    return {}
end

redis.call('HSET', prefix .. ':workers', wid, table.concat(queues, ','))

local seq = prefix .. ':seq'
if floor > 0 and tonumber(redis.call('GET', seq) or '0') < floor then
    redis.call('SET', seq, string.format('%d', floor))
end
local last = redis.call('INCRBY', seq, count)
local first = last - count + 1
local inflight = prefix .. ':inflight:' .. wid
local out, pairs_ = {}, {}
for i = 1, count do
    local tag = string.format('%d', first + i - 1)
    out[#out + 1] = tag
    out[#out + 1] = taken_queue[i]
    out[#out + 1] = taken_raw[i]
    pairs_[#pairs_ + 1] = tag
    pairs_[#pairs_ + 1] = taken_queue[i] .. '\n' .. taken_raw[i]
    -- HSET in slices: unpack() of a huge table would overflow Lua's C stack.
    if #pairs_ >= 1000 or i == count then
        redis.call('HSET', inflight, unpack(pairs_))
        pairs_ = {}
    end
end
return out
