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
-- A tag written "^<tag>" is an ack (as "~", the unique lock released when hash is not
-- empty) that also performs the message's canvas work (chain, group, chord; see
-- docs/design.md "Canvas") in the same atomic step: four more values follow the five,
-- hash, id, canvas ttl (seconds, as ttl: > 0 expires, < 0 never), k, then k values of
-- operations, each a name and its values:
--   push    marker, n, then n times queue, text: unless <prefix>:canvas:<marker>:sent
--           exists (SET NX, canvas ttl), LPUSH each text onto its queue: the next link of
--           a chain, enqueued once even if the same link finishes twice
--   result  id, json: store and publish a result (a ChainAborted FAILURE)
--   group   gid, task, n, children JSON, mode ("" a group, "m" a chord whose callback
--           gets the results, "i" an immutable callback), callback queue, callback id,
--           callback task, callback head, callback tail, interim result JSON, then n
--           times queue, text: unless <prefix>:canvas:<gid>:sent exists, write the
--           state hash <prefix>:canvas:<gid>, LPUSH every member (in slices of 1000) and
--           store the interim result
--   member  gid, index, record ("S" + result JSON or "F" + error JSON): while the state
--           hash exists, HSETNX index -> record into <prefix>:canvas:<gid>:done; when
--           every index is there and SET <prefix>:canvas:<gid>:fired NX succeeds, store
--           the ordered result, LPUSH the callback (head .. list .. tail) or fail it
--           (ChordError), and delete the state. A member finishing twice is counted once;
--           the callback is pushed once, however many members finish at once.
--   crawl   crawl, url, max, ttl, outcome ("d" done: SUCCESS; "f" failed: any other
--           final outcome): the final outcome of an http.scrape page of a crawl (see
--           docs/design.md "Crawls"; crawl_step.lua writes the same keys). Unless url is
--           in <prefix>:crawl:<crawl>:done or :failed already, SADD it to the one its
--           outcome names; a url not in :seen yet (a root page that never reached its
--           step) is added and counted in enqueued; HSETNX max; the hash's done and failed
--           are the sets' sizes; every key of the crawl expires ttl seconds later. So a
--           page counts once, as its first final outcome, however often it runs.
-- The operations run only when the HDEL removes the entry, after its result is stored.
--
-- A tag written "+<tag>" is an ack (as a plain tag) that also does what follows the task
-- (Celery's callbacks, errbacks and chain, broker_celery.h): after the five values, a
-- count k, then k triples: op, key, text. Op "L": LPUSH text onto the list key (a message
-- published); op "R": store text as a result at key (ttl and guard as the entry's own
-- result, then PUBLISH). Only when HDEL removes the entry, so the next step of a chain is
-- published exactly when the step before is acked: a kill at any point leaves the step to
-- run again, or the next one published, never both and never neither.
--
-- Op "J" counts a Celery chord member (broker_celery.h, ctl the JSON object of text) as
-- Celery's Redis backend does (celery/backends/redis.py on_chord_part_return): ZADD its
-- [1, id, state, result] to <key>.j at score group_index, unless that index already holds
-- this id (a member is counted once, however often it is delivered); when the count
-- reaches <key>.s (the producer's size) plus <key>.t, the callback is published with the
-- members' results in index order (or, when a member failed or was revoked, its ChordError
-- is stored and published at the callback's result key), and the three keys are deleted.
-- Python workers count their members in the same keys, so a mixed fleet completes one
-- chord together.
--
-- A result key of Celery's ("celery-task-meta-<id>") is stored and published only when
-- no SUCCESS is stored there already: a Python worker, or an earlier delivery, may have
-- finished the task, and a late FAILURE, RETRY or STARTED must not replace that.
--
-- Keys are built from the prefix inside the script; not Redis Cluster compatible.

local prefix, wid = ARGV[1], ARGV[2]

-- A queue's list: "=<name>" is a Celery queue, the list <name> itself (broker_keys.h).
-- queue_key(prefix, q) comes from lib_queue.lua, which the build puts in front.
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

-- ---- Celery chords (the "J" follow-ups) ----

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(s)
    local parts, n = {}, #s
    for i = 1, n, 3 do
        local a, b, c = string.byte(s, i, i + 2)
        local v = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for k = 1, 4 do
            local d = math.floor(v / 2 ^ (6 * (4 - k))) % 64
            q[k] = string.sub(B64, d + 1, d + 1)
        end
        if not b then
            q[3] = '='
        end
        if not c then
            q[4] = '='
        end
        parts[#parts + 1] = table.concat(q)
    end
    return table.concat(parts)
end

-- The index just past the JSON string starting at e[i] (a '"').
local function skip_string(e, i)
    i = i + 1
    while i <= #e do
        local ch = string.sub(e, i, i)
        if ch == '\\' then
            i = i + 2
        elseif ch == '"' then
            return i + 1
        else
            i = i + 1
        end
    end
    return nil
end

-- The text of the 4th element of a member "[1, id, state, result]" as it was written
-- (by workerd or by Python's json: any spacing), so that numbers keep every digit.
local function member_result(e)
    local i = string.find(e, '"', 1, true)
    i = i and skip_string(e, i)
    i = i and string.find(e, '"', i, true)
    i = i and skip_string(e, i)
    local from = i and string.find(e, ',', i, true)
    local to = string.find(e, '%]%s*$')
    if not from or not to then
        return 'null'
    end
    return string.sub(e, from + 1, to - 1)
end

local function chord_member(gkey, text, ttl)
    local c = cjson.decode(text)
    local jkey, tkey, skey = gkey .. '.j', gkey .. '.t', gkey .. '.s'
    local index = c.index
    if index < 0 then
        index = '+inf'
    end
    for _, e in ipairs(redis.call('ZRANGEBYSCORE', jkey, index, index)) do
        local ok, d = pcall(cjson.decode, e)
        if ok and type(d) == 'table' and d[2] == c.id then
            return
        end
    end
    redis.call('ZADD', jkey, index, c.member)
    local count = redis.call('ZCARD', jkey)
    local total = tonumber(redis.call('GET', skey))
    if ttl > 0 then
        redis.call('EXPIRE', jkey, ttl)
        redis.call('EXPIRE', tkey, ttl)
        redis.call('EXPIRE', skey, ttl)
    end
    if not total or count ~= total + (tonumber(redis.call('GET', tkey)) or 0) then
        return
    end
    local results, failed = {}, nil
    for _, e in ipairs(redis.call('ZRANGE', jkey, 0, -1)) do
        local ok, d = pcall(cjson.decode, e)
        local state = ok and type(d) == 'table' and d[3] or 'FAILURE'
        if state == 'FAILURE' or state == 'REVOKED' then
            failed = ok and type(d) == 'table' and d or {1, '?', state, {}}
            break
        end
        results[#results + 1] = member_result(e)
    end
    redis.call('DEL', jkey, tkey, skey)
    if failed then
        if celery_success_stored(c.cb_key) then
            return
        end
        local exc = type(failed[4]) == 'table' and failed[4] or {}
        local msg = exc.exc_message
        if type(msg) == 'table' then
            msg = msg[1]
        end
        local doc = cjson.encode({
            status = 'FAILURE',
            result = {
                exc_type = 'ChordError',
                exc_message = {'Dependency ' .. tostring(failed[2]) .. ' raised ' ..
                    tostring(exc.exc_type or 'Exception') .. '(' .. cjson.encode(
                    tostring(msg or '')) .. ')'},
                exc_module = 'celery.exceptions'
            },
            traceback = cjson.null,
            date_done = c.date_done,
            task_id = c.cb_id
        })
        if ttl > 0 then
            redis.call('SET', c.cb_key, doc, 'EX', ttl)
        else
            redis.call('SET', c.cb_key, doc)
        end
        redis.call('PUBLISH', c.cb_key, doc)
        return
    end
    local body = c.body_head
    if c.results then
        body = body .. '[' .. table.concat(results, ',') .. ']' .. c.body_tail
    end
    redis.call('LPUSH', c.queue, c.env_head .. b64(body) .. c.env_tail)
end

-- ---- canvas (the "^" entries) ----

local function expire(key, cttl)
    if cttl > 0 then
        redis.call('EXPIRE', key, cttl)
    end
end

local function set_nx(key, cttl)
    if cttl > 0 then
        return redis.call('SET', key, '1', 'NX', 'EX', cttl)
    end
    return redis.call('SET', key, '1', 'NX')
end

local function store(id, json, cttl)
    local key = prefix .. ':result:' .. id
    if cttl > 0 then
        redis.call('SET', key, json, 'EX', cttl)
    else
        redis.call('SET', key, json)
    end
    redis.call('PUBLISH', key, json)
end

-- LPUSH ARGV[first], ARGV[first + 2], ... onto the queues before them, n pairs, in
-- slices (unpack() of a huge table would overflow Lua's C stack).
local function push_pairs(first, n)
    local slice, queue = {}, nil
    for k = 0, n - 1 do
        local q, text = ARGV[first + 2 * k], ARGV[first + 2 * k + 1]
        if q ~= queue or #slice >= 1000 then
            if #slice > 0 then
                redis.call('LPUSH', queue_key(prefix, queue), unpack(slice))
            end
            slice, queue = {}, q
        end
        slice[#slice + 1] = text
    end
    if #slice > 0 then
        redis.call('LPUSH', queue_key(prefix, queue), unpack(slice))
    end
end

-- Every member of gid has finished: fire once.
local function complete(gid, cttl)
    local state = prefix .. ':canvas:' .. gid
    local flat = redis.call('HGETALL', state)
    local m = {}
    for k = 1, #flat, 2 do
        m[flat[k]] = flat[k + 1]
    end
    if not m.n or not set_nx(state .. ':fired', cttl) then
        return
    end
    local done, n = state .. ':done', tonumber(m.n)
    local oks, errs = {}, {}
    for first = 0, n - 1, 1000 do
        local fields = {}
        for k = first, math.min(n - 1, first + 999) do
            fields[#fields + 1] = string.format('%d', k)
        end
        for _, v in ipairs(redis.call('HMGET', done, unpack(fields))) do
            if v and string.sub(v, 1, 1) == 'S' then
                oks[#oks + 1] = string.sub(v, 2)
            else
                errs[#errs + 1] = v and string.sub(v, 2) or 'null'
            end
        end
    end
    local head = '{"id":' .. cjson.encode(gid) .. ',"task":' .. cjson.encode(m.task)
    local t = redis.call('TIME')
    local tail = ',"children":' .. m.children .. ',"finished_at":' ..
        string.format('%s.%06d', t[1], tonumber(t[2])) .. '}'
    local list = '[' .. table.concat(oks, ',') .. ']'
    if #errs == 0 then
        store(gid, head .. ',"status":"SUCCESS","result":' .. list .. tail, cttl)
        if m.mode == 'm' then
            redis.call('LPUSH', queue_key(prefix, m.cb_queue), m.cb_head .. list .. m.cb_tail)
        elseif m.mode == 'i' then
            redis.call('LPUSH', queue_key(prefix, m.cb_queue), m.cb_head)
        end
    else
        local etype = m.mode == '' and 'GroupError' or 'ChordError'
        local msg = string.format('%d of %d members failed', #errs, n)
        store(gid, head .. ',"status":"FAILURE","error":{"type":"' .. etype .. '","message":' ..
            cjson.encode(msg) .. '},"errors":[' .. table.concat(errs, ',') .. ']' .. tail, cttl)
        if m.mode ~= '' then
            store(m.cb_id, '{"id":' .. cjson.encode(m.cb_id) .. ',"task":' ..
                cjson.encode(m.cb_task) .. ',"status":"FAILURE","error":{"type":"ChordError",' ..
                '"message":' .. cjson.encode('chord ' .. gid .. ': ' .. msg) ..
                '},"retries":0}', cttl)
        end
    end
    redis.call('DEL', state, done)
end

-- The final outcome of a crawl's page ("crawl" above). recover.lua does the same for a
-- page it dead-letters: keep the two in step.
local function crawl_final(crawl, url, max, ttl, outcome)
    local base = prefix .. ':crawl:' .. crawl
    local seen, done, failed = base .. ':seen', base .. ':done', base .. ':failed'
    redis.call('HSETNX', base, 'max', max)
    if redis.call('SADD', seen, url) == 1 then
        redis.call('HINCRBY', base, 'enqueued', 1)
    end
    if redis.call('SISMEMBER', done, url) == 0 and redis.call('SISMEMBER', failed, url) == 0 then
        if outcome == 'd' then
            redis.call('SADD', done, url)
        else
            redis.call('SADD', failed, url)
        end
    end
    redis.call('HSET', base, 'done', redis.call('SCARD', done), 'failed',
        redis.call('SCARD', failed))
    local t = tonumber(ttl) or 604800
    for _, key in ipairs({base, seen, done, failed}) do
        redis.call('EXPIRE', key, t)
    end
end

-- Run the k operation values from ARGV[first]; see the header.
local function canvas(first, k, cttl)
    local j, last = first, first + k - 1
    while j <= last do
        local op = ARGV[j]
        if op == 'push' then
            local n = tonumber(ARGV[j + 2])
            if set_nx(prefix .. ':canvas:' .. ARGV[j + 1] .. ':sent', cttl) then
                push_pairs(j + 3, n)
            end
            j = j + 3 + 2 * n
        elseif op == 'result' then
            store(ARGV[j + 1], ARGV[j + 2], cttl)
            j = j + 3
        elseif op == 'group' then
            local gid, n = ARGV[j + 1], tonumber(ARGV[j + 3])
            local state = prefix .. ':canvas:' .. gid
            if set_nx(state .. ':sent', cttl) then
                redis.call('HSET', state, 'task', ARGV[j + 2], 'n', ARGV[j + 3],
                    'children', ARGV[j + 4], 'mode', ARGV[j + 5], 'cb_queue', ARGV[j + 6],
                    'cb_id', ARGV[j + 7], 'cb_task', ARGV[j + 8], 'cb_head', ARGV[j + 9],
                    'cb_tail', ARGV[j + 10])
                expire(state, cttl)
                store(gid, ARGV[j + 11], cttl)
                push_pairs(j + 12, n)
                if n == 0 then
                    complete(gid, cttl)
                end
            end
            j = j + 12 + 2 * n
        elseif op == 'member' then
            local gid, index = ARGV[j + 1], ARGV[j + 2]
            local state = prefix .. ':canvas:' .. gid
            local n = tonumber(redis.call('HGET', state, 'n'))
            if n then
                local done = state .. ':done'
                redis.call('HSETNX', done, index, ARGV[j + 3])
                expire(done, cttl)
                if redis.call('HLEN', done) >= n then
                    complete(gid, cttl)
                end
            end
            j = j + 4
        elseif op == 'crawl' then
            crawl_final(ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4], ARGV[j + 5])
            j = j + 6
        else
            return redis.error_reply('ack.lua: unknown canvas operation ' .. tostring(op))
        end
    end
end
local i = 3
while i <= #ARGV do
    local tag, key, json, channel = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
    local ttl = math.floor(tonumber(ARGV[i + 3]) or 0)
    local kind = string.sub(tag, 1, 1)
    local ours
    local canvas_first, canvas_k, canvas_ttl
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
                redis.call('LPUSH', queue_key(prefix, queue), text)
            else
                local member = real .. '@' .. wid .. '\n' .. queue .. '\n' .. text
                redis.call('ZADD', prefix .. ':scheduled', due, member)
            end
        end
        i = i + 3
    elseif kind == '^' then
        local hash, id = ARGV[i + 5], ARGV[i + 6]
        local k = tonumber(ARGV[i + 8])
        ours = redis.call('HDEL', inflight, string.sub(tag, 2)) == 1
        if ours then
            local lock = prefix .. ':unique:' .. hash
            if hash ~= '' and redis.call('GET', lock) == id then
                redis.call('DEL', lock)
            end
            canvas_first, canvas_k = i + 9, k
            canvas_ttl = math.floor(tonumber(ARGV[i + 7]) or 0)
        end
        i = i + 4 + k
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
                elseif op == 'J' then
                    chord_member(fkey, text, ttl)
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
        if canvas_first then
            local err = canvas(canvas_first, canvas_k, canvas_ttl)
            if err then
                return err
            end
        end
        out[#out + 1] = 1
    else
        out[#out + 1] = 0
    end
    i = i + 5
end
return out
