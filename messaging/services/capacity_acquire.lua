-- Take `count` sends from every bucket, or from none (messaging.services.ratelimit).
--
-- KEYS[1]     the grant record (a hash: which counters were incremented, by how much)
-- KEYS[2..n]  one counter per bucket
-- ARGV[1]     count
-- ARGV[2]     grant record TTL (ms)
-- ARGV[3..]   per bucket, four values: limit, counter TTL (ms), retry-at (epoch ms), and 1
--             if the counter must be seeded from the send ledger when it is missing
--
-- Returns {status, retry_at_ms, blocked_mask, used_1, ..., used_m}
--   status 1: granted now; 2: this grant id was already granted (nothing taken again);
--   0: refused, nothing taken; retry_at_ms is when the last full bucket's window ends and
--   bit (i-1) of blocked_mask is set for each bucket i that is full;
--   3: nothing taken, bit (i-1) of blocked_mask is set for each counter to seed first (a new
--   window, or Redis lost its data: counting from zero would exceed the cap).
-- used_i is bucket i's counter after the call.

local count = tonumber(ARGV[1])
local nbuckets = #KEYS - 1

local used = {}
for i = 1, nbuckets do
  used[i] = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {2, 0, 0, unpack(used)}
end

local missing = 0
local flag = 1
for i = 1, nbuckets do
  if tonumber(ARGV[3 + (i - 1) * 4 + 3]) == 1 and redis.call('EXISTS', KEYS[i + 1]) == 0 then
    missing = missing + flag
  end
  flag = flag * 2
end
if missing > 0 then
  return {3, 0, missing, unpack(used)}
end

local retry_at = 0
local blocked = 0
local bit = 1
for i = 1, nbuckets do
  local base = 3 + (i - 1) * 4
  local limit = tonumber(ARGV[base])
  if used[i] + count > limit then
    blocked = blocked + bit
    local until_ms = tonumber(ARGV[base + 2])
    if until_ms > retry_at then
      retry_at = until_ms
    end
  end
  bit = bit * 2
end

if blocked > 0 then
  return {0, retry_at, blocked, unpack(used)}
end

local names = {}
for i = 1, nbuckets do
  local base = 3 + (i - 1) * 4
  used[i] = redis.call('INCRBY', KEYS[i + 1], count)
  redis.call('PEXPIRE', KEYS[i + 1], tonumber(ARGV[base + 1]))
  names[i] = KEYS[i + 1]
end
redis.call('HSET', KEYS[1], 'count', count, 'keys', table.concat(names, ' '))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {1, 0, 0, unpack(used)}
