-- Give back a grant's sends, at most once (messaging.services.ratelimit).
--
-- KEYS[1]     the grant record
-- KEYS[2..n]  the counters the grant incremented, as the record lists them
-- ARGV[1]     the record's `keys` field as the caller read it
--
-- Returns 1 when released, 0 when there was nothing to release (already released, or the
-- grant's windows are over), -1 when the record changed since the caller read it.
-- A counter is never taken below zero, and a counter that already expired is left alone:
-- its window is over, and recreating it would charge nobody.

local record = redis.call('HMGET', KEYS[1], 'count', 'keys')
if not record[1] then
  return 0
end
if record[2] ~= ARGV[1] then
  return -1
end
redis.call('DEL', KEYS[1])
local count = tonumber(record[1])
for i = 2, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  local refund = math.min(current, count)
  if refund > 0 then
    redis.call('DECRBY', KEYS[i], refund)
  end
end
return 1
