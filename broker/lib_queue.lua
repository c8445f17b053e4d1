-- lib_queue.lua - the Lua helpers the queue-moving scripts share (Redis scripts cannot
-- include one another). The build (broker/embed_lua.cmake) puts this file's code, with
-- its comment lines dropped and its lines joined into one, in front of the first line of
-- each script listed in BROKER_LUA_PRELUDED (broker/CMakeLists.txt): the scripts keep
-- their line numbers in Redis's error messages. So: whole-line comments only, and no
-- code that needs a line break.
--
-- queue_key(prefix, q): the Redis key of the queue named q. A name starting with '=' is
-- a whole key given as is (a Celery queue, whose key is its bare name: "=celery" is the
-- key "celery"); any other name is <prefix>:queue:<name>.
local function queue_key(prefix, q)
    if string.sub(q, 1, 1) == '=' then
        return string.sub(q, 2)
    end
    return prefix .. ':queue:' .. q
end
