-- One relay's tick for one room: refresh its members, remove those that left or expired,
-- and announce what changed, all at once (no other relay's tick runs in between, so each
-- leave is removed, and announced, by exactly one relay).
--
-- KEYS[1]  the room's members: a sorted set of public ids, scored by when each expires
-- KEYS[2]  the room's members' details: a hash of public id -> member JSON
-- ARGV[1]  the room
-- ARGV[2]  the channel to announce on
-- ARGV[3]  the typing events to announce, as a JSON array ("[]" for none)
-- ARGV[4]  how long the keys outlive their last refresh, in ms
-- ARGV[5]  N, the number of members refreshed; then N times: id, TTL in ms, member JSON,
--          "1" if its details changed since this relay last said; then the ids that left.
-- Clocks: Redis's own (TIME), so that relays with skewed clocks agree on who expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[5])
local joined = {}
local i = 6
for _ = 1, n do
  local id, ttl, info, changed = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  -- GT: another relay that holds the same member for longer keeps its later expiry.
  local added = redis.call('ZADD', KEYS[1], 'GT', now + ttl, id)
  if added == 1 or changed == '1' then
    local old = redis.call('HGET', KEYS[2], id)
    if old ~= info then
      redis.call('HSET', KEYS[2], id, info)
    end
    if added == 1 or old ~= info then
      joined[#joined + 1] = info
    end
  end
end
local left, said = {}, {}
for j = i, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[j]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[j])
    left[#left + 1] = ARGV[j]
    said[#said + 1] = ARGV[j]
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  left[#left + 1] = id
end
local count = redis.call('ZCARD', KEYS[1])
if count > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if #joined > 0 or #left > 0 or ARGV[3] ~= '[]' then
  -- room, count, left ids, the ids among them that said they left (every relay that holds
  -- one forgets it), typing events, then one joined member per line (JSON never holds a raw
  -- line break; room names and ids are plain).
  local lines = { ARGV[1], tostring(count), table.concat(left, ','), table.concat(said, ','), ARGV[3] }
  for _, info in ipairs(joined) do
    lines[#lines + 1] = info
  end
  redis.call('PUBLISH', ARGV[2], table.concat(lines, '\n'))
end
return count
