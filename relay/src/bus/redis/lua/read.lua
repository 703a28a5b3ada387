-- What a cursor is owed, without creating the room (a stray GET must not use a room's place).
--
-- KEYS: 1 the sorted set of rooms, 2 the sorted set of listened rooms (unused here)
-- ARGV: 1 room, 2 after ('' for a newcomer), 3 cursor epoch ('' for any), 4 limit,
--       5 most bytes of entries
-- Returns {epoch, newest id, oldest id, entries oldest first}; '' and '0-0's for a room
-- that does not exist.
return read_view(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
