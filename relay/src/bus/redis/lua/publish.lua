-- Appends one message to a room (creating the room if allowed) and announces it, as one
-- atomic step. The id is the room stream's next sequence number (XADD 0-*), so ids increase
-- strictly per room whichever relay publishes, and announcements leave Redis in id order.
-- The oldest entries then go until the room holds at most `retention` messages and
-- `max_bytes` bytes (the newest always stays).
--
-- KEYS: 1 the sorted set of rooms, 2 the sorted set of listened rooms
-- ARGV: 1 room, 2 from, 3 text, 4 ts, 5 announcement channel, 6 fresh epoch, 7 now (ms),
--       8 TTL (ms), 9 most rooms, 10 how long a listen mark lasts (ms, unused here),
--       11 may create ('1'/'0'), 12 retention, 13 max bytes, 14 the message's size as kept
--       (counted by the relay as the memory bus counts it), 15 the idempotency key ('' for
--       none), 16 how long a key is remembered (ms), 17 the fingerprint of sender and text
--       the key is bound to
-- Returns {epoch, stream id, created, duplicate}: with a key seen in this epoch within the
-- window, nothing is stored or announced and the id is the first one's — or, if the key was
-- bound to another sender or text, the error KEY_REUSED.
local room = ARGV[1]
local epoch, created = ensure_room(KEYS[1], KEYS[2], room, ARGV[6], tonumber(ARGV[7]),
  tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[11])
if not epoch then
  return redis.error_reply(created)
end
local key = ARGV[15]
local key_key = room_key(room, 'key:' .. epoch .. ':' .. key)
if key ~= '' then
  local first = redis.call('GET', key_key)
  if first then
    local id, bound = string.match(first, '^(%S+) (%S+)$')
    if bound ~= ARGV[17] then
      return redis.error_reply('KEY_REUSED the key was used for another message')
    end
    return {epoch, id, created, 1}
  end
end
local log_key = room_key(room, 'log')
local bytes_key = room_key(room, 'bytes')
local size = tonumber(ARGV[14])
local id
if key ~= '' then
  id = redis.call('XADD', log_key, '0-*', 'f', ARGV[2], 't', ARGV[3], 'ts', ARGV[4], 'n', size,
    'k', key)
  redis.call('SET', key_key, id .. ' ' .. ARGV[17], 'PX', tonumber(ARGV[16]))
else
  id = redis.call('XADD', log_key, '0-*', 'f', ARGV[2], 't', ARGV[3], 'ts', ARGV[4], 'n', size)
end
local total = redis.call('INCRBY', bytes_key, size)
local retention = tonumber(ARGV[12])
local max_bytes = tonumber(ARGV[13])
while redis.call('XLEN', log_key) > 1
  and (redis.call('XLEN', log_key) > retention or total > max_bytes) do
  local oldest = redis.call('XRANGE', log_key, '-', '+', 'COUNT', 1)[1]
  local fields = oldest[2]
  local freed = 0
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then freed = tonumber(fields[i + 1]) end
  end
  redis.call('XDEL', log_key, oldest[1])
  total = redis.call('DECRBY', bytes_key, freed)
end
local ttl = tonumber(ARGV[8])
redis.call('PEXPIRE', log_key, ttl)
redis.call('PEXPIRE', bytes_key, ttl)
-- room, epoch, id, ts, key and sender never contain a line break; the text goes last and may.
redis.call('PUBLISH', ARGV[5],
  room .. '\n' .. epoch .. '\n' .. id .. '\n' .. ARGV[4] .. '\n' .. key .. '\n' .. ARGV[2]
  .. '\n' .. ARGV[3])
return {epoch, id, created, 0}
