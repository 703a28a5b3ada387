-- Replaces a room's epoch, unless another relay already did. Compare-and-set, so that relays
-- noticing the same loss agree on one new epoch; the room keeps its time to live.
--
-- KEYS: 1 the room's epoch key
-- ARGV: 1 the epoch found lost, 2 the new epoch
-- Returns nothing.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
