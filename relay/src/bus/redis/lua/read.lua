-- One consistent view of a room for a cursor: the dataset epoch, the newest and oldest
-- retained stream ids, and the window the cursor is owed. The relay decides the rest (resets,
-- `more`) with the same rules as the in-memory bus; this script fetches what they need.
--
-- KEYS: 1 dataset epoch, 2 room stream
-- ARGV: 1 epoch to create if none, 2 after ('' for a newcomer), 3 cursor epoch ('' for any),
--       4 limit
-- Returns {epoch, newest id, oldest id, entries oldest first}; both ids are '0-0' for an
-- empty room.
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #newest == 0 then
  return {epoch, '0-0', '0-0', {}}
end
local head = newest[1][1]
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1][1]
local limit = tonumber(ARGV[4])
local after = tonumber(ARGV[2])
local continues = after ~= nil
  and (ARGV[3] == '' or ARGV[3] == epoch)
  and after <= tonumber(string.sub(head, 3))
local entries = {}
if continues then
  -- One more than asked, so the relay can tell whether more are left.
  entries = redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[2], '+', 'COUNT', limit + 1)
elseif limit > 0 then
  local newest_first = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
  for i = #newest_first, 1, -1 do
    entries[#entries + 1] = newest_first[i]
  end
end
return {epoch, head, oldest, entries}
