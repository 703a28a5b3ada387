-- A room's members now (at most ARGV[1] of them), for a relay that starts following it.
-- KEYS[1] the members' sorted set, KEYS[2] their details (see tick.lua).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
if #ids == 0 then
  return {}
end
return redis.call('HMGET', KEYS[2], unpack(ids))
