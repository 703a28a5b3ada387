-- Appends one message to a room and announces it, as one atomic step. The id is the room
-- stream's next sequence number (XADD 0-*), so ids increase strictly per room whichever relay
-- publishes, and announcements leave Redis in id order.
--
-- KEYS: 1 dataset epoch, 2 room stream, 3 set of rooms
-- ARGV: 1 epoch to create if none, 2 retention, 3 most rooms, 4 room, 5 from, 6 text, 7 ts,
--       8 announcement channel
-- Returns {epoch, stream id}.
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 0 then
  if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then
    return redis.error_reply('TOO_MANY_ROOMS the relays hold as many rooms as they may')
  end
  redis.call('SADD', KEYS[3], ARGV[4])
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-*',
  'f', ARGV[5], 't', ARGV[6], 'ts', ARGV[7])
-- room, epoch, id, ts and sender never contain a line break; the text goes last and may.
redis.call('PUBLISH', ARGV[8],
  ARGV[4] .. '\n' .. epoch .. '\n' .. id .. '\n' .. ARGV[7] .. '\n' .. ARGV[5] .. '\n' .. ARGV[6])
return {epoch, id}
