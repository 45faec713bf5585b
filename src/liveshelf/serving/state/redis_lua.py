"""The Lua scripts of the Redis state: each runs server-side in one call (atomic, one round trip)."""

# Log-add counter increments; the same arithmetic as counters.log_add. KEYS: sorted sets; ARGV: per
# key n, then n (member, log-score) pairs.
MERGE_LUA = """
local ln2 = math.log(2)
local p = 1
for i = 1, #KEYS do
  local key = KEYS[i]
  local n = tonumber(ARGV[p]); p = p + 1
  for j = 1, n do
    local m = ARGV[p]
    local b = tonumber(ARGV[p + 1])
    p = p + 2
    local old = redis.call('ZSCORE', key, m)
    local new = b
    if old then
      local a = tonumber(old)
      local hi, lo = a, b
      if b > a then hi = b; lo = a end
      new = hi + math.log(1 + 2 ^ (lo - hi)) / ln2
    end
    redis.call('ZADD', key, string.format('%.17g', new), m)
  end
end
return #KEYS
"""

# Sequences (RPUSH + LTRIM), audiences (ZADD GT / ZREM) and user -> rooms sets, one call per batch.
# KEYS: seq keys, then audience keys, then urooms keys. ARGV: max_seq, #seq, #aud, #urooms, then per
# seq key: n, n entries; per audience key: n, n (member, score) pairs, m, m members to remove;
# per urooms key: n, n rooms.
APPLY_LUA = """
local max_seq = tonumber(ARGV[1])
local ns, na, nu = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local p = 5
local function chunked(cmd, key, first, last, extra)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    if extra then
      redis.call(cmd, key, extra, unpack(ARGV, i, j))
    else
      redis.call(cmd, key, unpack(ARGV, i, j))
    end
    i = j + 1
  end
end
for i = 1, ns do
  local c = tonumber(ARGV[p]); p = p + 1
  chunked('RPUSH', KEYS[i], p, p + c - 1)
  redis.call('LTRIM', KEYS[i], -max_seq, -1)
  p = p + c
end
for i = 1, na do
  local key = KEYS[ns + i]
  local c = tonumber(ARGV[p]); p = p + 1
  if c > 0 then
    local args = {}
    for j = 0, c - 1 do
      args[#args + 1] = ARGV[p + 2 * j + 1]
      args[#args + 1] = ARGV[p + 2 * j]
    end
    for a = 1, #args, 1000 do
      redis.call('ZADD', key, 'GT', unpack(args, a, math.min(a + 999, #args)))
    end
  end
  p = p + 2 * c
  local r = tonumber(ARGV[p]); p = p + 1
  if r > 0 then chunked('ZREM', key, p, p + r - 1) end
  p = p + r
end
for i = 1, nu do
  local c = tonumber(ARGV[p]); p = p + 1
  chunked('SADD', KEYS[ns + na + i], p, p + c - 1)
  p = p + c
end
return ns + na + nu
"""

# Mark event ids as seen (ZADD NX: 1 = new), then forget those older than the window.
# ARGV: cutoff, then (event id, ts) pairs.
DEDUPE_LUA = """
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return out
"""

# Audience sizes of many rooms in one call. KEYS: (room hash, audience zset) pairs; ARGV: t, the last-seen cutoff.
AUDIENCE_LUA = """
local t = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  local se = redis.call('HMGET', KEYS[i], 'start', 'end')
  local live = true
  if se[1] then
    if tonumber(se[1]) > t then live = false end
    if se[2] and se[2] ~= '' and t >= tonumber(se[2]) then live = false end
  end
  out[#out + 1] = live and redis.call('ZCOUNT', KEYS[i + 1], '(' .. ARGV[2], '+inf') or 0
end
return out
"""

# Rooms with end > t, then start <= t: one round trip.
LIVE_LUA = """
local t = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local out = {}
for _, id in ipairs(ids) do
  local s = redis.call('ZSCORE', KEYS[2], id)
  if s and tonumber(s) <= t then
    out[#out + 1] = id
    out[#out + 1] = s
  end
end
return out
"""


__all__ = ["APPLY_LUA", "AUDIENCE_LUA", "DEDUPE_LUA", "LIVE_LUA", "MERGE_LUA"]
