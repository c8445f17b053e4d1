-- recover.lua - give a dead worker's messages back to their queues; exactly one recoverer
-- wins, because the script is atomic and leaves nothing behind for a second one.
--
-- ARGV: prefix, wid (the dead worker), max_redeliveries, unused (was the recoverer's clock;
-- dead letters are dated on the server's TIME, which every host shares), recoverer
-- (the id of the worker running this), max_dead_bytes (optional, default 65536: raw text
-- kept in a dead letter).
-- Returns {requeued, dead, alive}: alive is 1 (and nothing was touched) when the worker's
-- heartbeat key <prefix>:worker:<wid> exists, so a live worker is never robbed, however
-- slow it is.
--
-- The worker's queue list comes from the <prefix>:workers HASH (wid -> comma-separated
-- queue names; a hash rather than a set so that recovery can find the landing lists
-- <prefix>:landing:<wid>:<queue> without KEYS or SCAN).
--
-- Every in-flight entry ("<queue>\n<raw>") goes back to the RIGHT end of its queue, so it
-- is the next one taken (oldest tag rightmost, preserving the order among them). Its
-- redelivery is counted in the message itself, byte-exact otherwise: ,"redelivered":N is
-- appended before the final '}' (N = the old value + 1, read with cjson; duplicate keys
-- resolve to the last one, in cjson as in workerd's parser). Then:
--   - a message that is not a JSON object is dead-lettered with reason
--     "unparseable message recovered from dead worker <wid>";
--   - a message whose N exceeds max_redeliveries is a poison pill (it was running every
--     time its worker died): dead-lettered with reason "poison pill: redelivered N times".
--     A poison pill that is a page of an http.scrape crawl (task "http.scrape" with a
--     string kwarg crawl, or follow > 0 and an id: the crawl is then its id) is also
--     counted failed in its crawl, as ack.lua's "crawl" operation counts a page's final
--     ack: the page's URL (args[1] or kwarg url) into <prefix>:crawl:<crawl>:failed
--     unless done or failed already, so that the crawl does not wait for it for ever.
--     The URL is taken as the message spells it (the worker spells a root page's URL as
--     its links would: a root given in another spelling may count once more in enqueued).
-- Landing-list entries go back unchanged and uncounted: they were never handed to a task,
-- so they cannot have killed the worker.
-- Finally the in-flight hash is deleted and the worker removed from the workers hash.
--
-- Dead letters are LPUSHed on <prefix>:dead in broker_result.h's shape, plus
-- "dead_worker". Keys are built from the prefix inside the script; not Redis Cluster
-- compatible.

local prefix, wid = ARGV[1], ARGV[2]
local max_redeliveries = tonumber(ARGV[3]) or 0
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local recoverer = ARGV[5]
local max_dead = tonumber(ARGV[6]) or 65536

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
-- queue_key(prefix, q) comes from lib_queue.lua, which the build puts in front.

if redis.call('EXISTS', prefix .. ':worker:' .. wid) == 1 then
    return {0, 0, 1}
end

local workers = prefix .. ':workers'
local inflight = prefix .. ':inflight:' .. wid
local requeued, dead = 0, 0

-- The crawl's keys live this long after their latest change, as task_crawl.h's
-- TASK_CRAWL_TTL; max_pages defaults to 100, as http.scrape's.
local CRAWL_TTL, CRAWL_MAX_PAGES = 604800, 100

-- A dead-lettered message that is a page of a crawl counts as failed in it (see above;
-- the same bookkeeping as ack.lua's crawl_final).
local function crawl_failed(m)
    if m.task ~= 'http.scrape' or type(m.kwargs) ~= 'table' then
        return
    end
    local kw = m.kwargs
    local crawl = kw.crawl
    if type(crawl) ~= 'string' then
        if type(kw.follow) ~= 'number' or kw.follow <= 0 or type(m.id) ~= 'string' then
            return
        end
        crawl = m.id
    end
    local url = type(m.args) == 'table' and m.args[1] or nil
    if type(url) ~= 'string' then
        url = kw.url
    end
    if type(url) ~= 'string' or crawl == '' or #crawl > 256 then
        return
    end
    local max = CRAWL_MAX_PAGES
    if type(kw.max_pages) == 'number' and kw.max_pages >= 1 then
        max = math.floor(kw.max_pages)
    end
    local base = prefix .. ':crawl:' .. crawl
    local seen, done, failed = base .. ':seen', base .. ':done', base .. ':failed'
    redis.call('HSETNX', base, 'max', string.format('%d', max))
    if redis.call('SADD', seen, url) == 1 then
        redis.call('HINCRBY', base, 'enqueued', 1)
    end
    if redis.call('SISMEMBER', done, url) == 0 then
        redis.call('SADD', failed, url)
    end
    redis.call('HSET', base, 'done', redis.call('SCARD', done), 'failed',
        redis.call('SCARD', failed))
    for _, key in ipairs({base, seen, done, failed}) do
        redis.call('EXPIRE', key, CRAWL_TTL)
    end
end

local function dead_letter(raw, queue, reason, id)
    local cut = #raw
    if cut > max_dead then
        -- Do not split a UTF-8 character: back off over continuation bytes.
        cut = max_dead
        for _ = 1, 3 do
            local b = string.byte(raw, cut + 1)
            if b and b >= 0x80 and b < 0xc0 and cut > 0 then
                cut = cut - 1
            else
                break
            end
        end
    end
    local entry = {
        message = string.sub(raw, 1, cut), truncated = cut < #raw, message_bytes = #raw,
        reason = reason, worker = recoverer, dead_worker = wid, time = now,
    }
    if type(id) == 'string' then entry.id = id end
    if queue then entry.queue = queue end
    redis.call('LPUSH', prefix .. ':dead', cjson.encode(entry))
    dead = dead + 1
end

-- Landing lists first: LMOVE LEFT->RIGHT takes the newest first, so the oldest ends up
-- rightmost, next to be taken after the in-flight entries pushed below.
local csv = redis.call('HGET', workers, wid)
if csv then
    for queue in string.gmatch(csv, '[^,]+') do
        local landing = prefix .. ':landing:' .. wid .. ':' .. queue
        local qkey = queue_key(prefix, queue)
        while redis.call('LMOVE', landing, qkey, 'LEFT', 'RIGHT') do
            requeued = requeued + 1
        end
    end
end

-- In-flight entries, newest tag first, so that the oldest is pushed last (rightmost).
local flat = redis.call('HGETALL', inflight)
local items = {}
for i = 1, #flat, 2 do
    items[#items + 1] = {tonumber(flat[i]) or 0, flat[i + 1]}
end
table.sort(items, function(a, b) return a[1] > b[1] end)

for _, item in ipairs(items) do
    local value = item[2]
    local nl = string.find(value, '\n', 1, true)
    if not nl then
        dead_letter(value, nil, 'in-flight entry without a queue name recovered from dead worker '
            .. wid, nil)
    else
        local queue, raw = string.sub(value, 1, nl - 1), string.sub(value, nl + 1)
        local ok, decoded = pcall(cjson.decode, raw)
        local close = string.match(raw, '()}%s*$')
        if not ok or type(decoded) ~= 'table' or not string.find(raw, '^%s*{') or not close then
            dead_letter(raw, queue, 'unparseable message recovered from dead worker ' .. wid, nil)
        else
            local old = decoded.redelivered
            local n = 1
            if type(old) == 'number' and old >= 0 then
                n = math.floor(old) + 1
            end
            if n > max_redeliveries then
                dead_letter(raw, queue, 'poison pill: redelivered ' .. string.format('%.0f', n)
                    .. ' times', decoded.id)
                crawl_failed(decoded)
            else
                local head = string.sub(raw, 1, close - 1)
                local sep = ','
                if string.find(head, '^%s*{%s*$') then
                    sep = ''
                end
                local counted = head .. sep .. '"redelivered":' .. string.format('%d', n)
                    .. string.sub(raw, close)
                redis.call('RPUSH', queue_key(prefix, queue), counted)
                requeued = requeued + 1
            end
        end
    end
end

redis.call('DEL', inflight)
redis.call('HDEL', workers, wid)
return {requeued, dead, 0}
