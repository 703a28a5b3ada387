-- Shared by the scripts that open, read and publish to a room (prepended to each of them).
--
-- A room's keys: chat:{ROOM}:epoch (its incarnation's epoch: the room exists while this does),
-- chat:{ROOM}:log (its stream; entry ids are 0-<message id>), chat:{ROOM}:bytes (the retained
-- entries' size). All three expire after the room TTL without activity. One sorted set
-- scores every room by its last activity (ms); another scores the rooms someone listens to
-- by when that stops being known (ms): relays renew it every few seconds for the rooms their
-- clients listen to, and opening a room for a subscriber sets it at once.

local function room_key(room, what)
  return 'chat:{' .. room .. '}:' .. what
end

-- Makes sure the room exists, creating it (a new incarnation, with epoch `fresh`) if
-- `may_create` is '1'. At `max_rooms`, rooms whose keys expired are forgotten, and then the
-- least recently active room nobody listens to makes way, history and all (scanning the
-- rooms oldest first: at most `max_rooms` of them, only when a new room needs a place).
-- Returns epoch, created (0/1), or nil and an error.
local function ensure_room(rooms_key, listened_key, room, fresh, now, ttl, max_rooms, may_create)
  local epoch_key = room_key(room, 'epoch')
  local epoch = redis.call('GET', epoch_key)
  local created = 0
  if not epoch then
    if may_create ~= '1' then
      return nil, 'NEW_ROOM_REFUSED the client may not create more rooms now'
    end
    redis.call('ZREMRANGEBYSCORE', rooms_key, '-inf', '(' .. (now - ttl))
    redis.call('ZREMRANGEBYSCORE', listened_key, '-inf', now)
    if redis.call('ZCARD', rooms_key) >= max_rooms then
      local victim = nil
      for _, name in ipairs(redis.call('ZRANGE', rooms_key, 0, -1)) do
        if not redis.call('ZSCORE', listened_key, name) then
          victim = name
          break
        end
      end
      if not victim then
        return nil, 'TOO_MANY_ROOMS every room has listeners'
      end
      redis.call('DEL', room_key(victim, 'epoch'), room_key(victim, 'log'), room_key(victim, 'bytes'))
      redis.call('ZREM', rooms_key, victim)
    end
    -- Leftovers of an earlier incarnation whose epoch expired first belong to nobody.
    redis.call('DEL', room_key(room, 'log'), room_key(room, 'bytes'))
    epoch = fresh
    redis.call('SET', epoch_key, epoch)
    created = 1
  end
  redis.call('ZADD', rooms_key, now, room)
  for _, what in ipairs({'epoch', 'log', 'bytes'}) do
    redis.call('PEXPIRE', room_key(room, what), ttl)
  end
  return epoch, created
end

-- One consistent view of a room for a cursor: its epoch ('' if the room does not exist),
-- the newest and oldest retained stream ids, and the window the cursor is owed (at most
-- `limit` + 1 entries, so that the relay can tell whether more are left).
-- The entries' counted size (their `n` field).
local function entry_size(entry)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then return tonumber(fields[i + 1]) end
  end
  return 0
end

-- `after` is the cursor as the client wrote it ('' for a newcomer): compared as a number,
-- and used as written in the stream id, so that no large id is rounded. At most `max_bytes`
-- of entries are fetched (plus one, so that the relay can tell that more are left).
local function read_view(room, after_raw, cursor_epoch, limit, max_bytes)
  local after = tonumber(after_raw)
  local epoch = redis.call('GET', room_key(room, 'epoch'))
  if not epoch then
    return {'', '0-0', '0-0', {}}
  end
  local log_key = room_key(room, 'log')
  local newest = redis.call('XREVRANGE', log_key, '+', '-', 'COUNT', 1)
  if #newest == 0 then
    return {epoch, '0-0', '0-0', {}}
  end
  local head = newest[1][1]
  local oldest = redis.call('XRANGE', log_key, '-', '+', 'COUNT', 1)[1][1]
  local continues = after ~= nil
    and (cursor_epoch == '' or cursor_epoch == epoch)
    and after <= tonumber(string.sub(head, 3))
  local entries = {}
  if after ~= nil then
    -- Continuing, from after the cursor; from another history (a foreign epoch, or a cursor
    -- past the head), from this one's start: the relay owes such a client all of it.
    local start = '-'
    if continues then start = '(0-' .. after_raw end
    local bytes = 0
    for _, entry in ipairs(redis.call('XRANGE', log_key, start, '+', 'COUNT', limit + 1)) do
      entries[#entries + 1] = entry
      bytes = bytes + entry_size(entry)
      if bytes > max_bytes then break end
    end
  elseif limit > 0 then
    local newest_first = redis.call('XREVRANGE', log_key, '+', '-', 'COUNT', limit)
    local keep, bytes = 0, 0
    for i = 1, #newest_first do
      bytes = bytes + entry_size(newest_first[i])
      if i > 1 and bytes > max_bytes then break end
      keep = i
    end
    for i = keep, 1, -1 do
      entries[#entries + 1] = newest_first[i]
    end
  end
  return {epoch, head, oldest, entries}
end
