-- Marks rooms as listened to and active: the relays call it every few seconds with the rooms
-- their clients listen to, so that those rooms never make way for new ones, and never expire.
--
-- KEYS: 1 the sorted set of rooms, 2 the sorted set of listened rooms
-- ARGV: 1 now (ms), 2 TTL (ms), 3 how long a listen mark lasts (ms), 4… rooms
-- Returns nothing.
local now, ttl, mark = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV do
  local room = ARGV[i]
  if redis.call('PEXPIRE', room_key(room, 'epoch'), ttl) == 1 then
    redis.call('ZADD', KEYS[1], now, room)
    redis.call('ZADD', KEYS[2], now + mark, room)
    redis.call('PEXPIRE', room_key(room, 'log'), ttl)
    redis.call('PEXPIRE', room_key(room, 'bytes'), ttl)
  end
end
