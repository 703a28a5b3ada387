-- Opens a room for a subscriber (creating it if allowed: a room is what people listen to),
-- marks it listened to, then reads what the cursor is owed, as one atomic step.
--
-- KEYS: 1 the sorted set of rooms, 2 the sorted set of listened rooms
-- ARGV: 1 room, 2 after, 3 cursor epoch, 4 limit, 5 fresh epoch, 6 now (ms), 7 TTL (ms),
--       8 most rooms, 9 how long a listen mark lasts (ms), 10 may create ('1'/'0'),
--       11 most bytes of entries
-- Returns {epoch, newest id, oldest id, entries, created}.
local now = tonumber(ARGV[6])
local epoch, created = ensure_room(KEYS[1], KEYS[2], ARGV[1], ARGV[5], now,
  tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[10])
if not epoch then
  return redis.error_reply(created)
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), ARGV[1])
local view = read_view(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[11]))
view[5] = created
return view
