-- Replaces the dataset epoch, unless another relay already did. Compare-and-set, so that
-- relays noticing the same loss agree on one new epoch.
--
-- KEYS: 1 dataset epoch
-- ARGV: 1 the epoch found lost, 2 the new epoch
-- Returns nothing.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
end
