-- crawl_step.lua - one page of an http.scrape crawl was fetched: record it seen, and push the
-- pages it found that the crawl has not seen yet, within the crawl's max_pages, in one
-- atomic step (broker_crawl.h).
--
-- ARGV: prefix, crawl, max_pages, ttl, queue, self, final, {url, message}...
--   crawl       the crawl's id
--   max_pages   the cap, kept from the first step of the crawl (HSETNX): later steps
--               cannot raise it
--   ttl         seconds every key of the crawl lives after its latest step
--   queue       the queue the new messages go to (<prefix>:queue:<queue>, LPUSH)
--   self        the URL of the page that is done (its task's url argument): seen, and
--               counted as enqueued when it was not seen yet (the root page)
--   final       "" or the URL it ended at after redirects: seen too, not counted
--   url, message  a page found, and the message that scrapes it
-- Keys:
--   <prefix>:crawl:<crawl>        hash {max, enqueued, done, failed}
--   <prefix>:crawl:<crawl>:seen   set of the URLs enqueued (or fetched) in the crawl
--   <prefix>:crawl:<crawl>:done   set of the URLs whose page succeeded (ack.lua)
--   <prefix>:crawl:<crawl>:failed set of the URLs whose page ended otherwise (ack.lua)
-- Returns {pushed, already seen, over max_pages, enqueued, done, max}.
--
-- A URL enters the seen set only together with the LPUSH of its message, so
-- no URL is ever pushed twice and enqueued never passes max. Keys are built from the
-- prefix inside the script; not Redis Cluster compatible.

local prefix, crawl, max, ttl, queue, self, final =
    ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local base = prefix .. ':crawl:' .. crawl
local seen, done, failed = base .. ':seen', base .. ':done', base .. ':failed'
redis.call('HSETNX', base, 'max', max)
max = tonumber(redis.call('HGET', base, 'max')) or tonumber(max)
local enqueued = tonumber(redis.call('HGET', base, 'enqueued') or '0') or 0
if redis.call('SADD', seen, self) == 1 then
    enqueued = enqueued + 1
end
if final ~= '' then
    redis.call('SADD', seen, final)
end
local qkey = prefix .. ':queue:' .. queue
local pushed, known, over = 0, 0, 0
for i = 8, #ARGV - 1, 2 do
    if redis.call('SISMEMBER', seen, ARGV[i]) == 1 then
        known = known + 1
    elseif enqueued >= max then
        over = over + 1
    else
        redis.call('SADD', seen, ARGV[i])
        redis.call('LPUSH', qkey, ARGV[i + 1])
        enqueued = enqueued + 1
        pushed = pushed + 1
    end
end
local ndone = redis.call('SCARD', done)
redis.call('HSET', base, 'enqueued', enqueued)
local t = tonumber(ttl)
for _, key in ipairs({base, seen, done, failed}) do
    redis.call('EXPIRE', key, t)
end
return {pushed, known, over, enqueued, ndone, max}
