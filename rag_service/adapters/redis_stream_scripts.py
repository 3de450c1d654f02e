"""The Lua scripts of ``RedisStreamStore`` (keys and fields: see its module docstring).

A replica writes the new events of all its streams in one script call per flush, so the cost
on both sides is per flush and per event, hardly per stream: one command for the client to
encode and one reply to parse, whatever the number of streams.
"""

from __future__ import annotations

from rag_service.ports import WATCHED_FOR_S

# KEYS: per stream, its events key then its record key.
# ARGV: live ttl ms, ended ttl ms, maxlen, the batch, then the writing replica's id. The batch: fields written "<length>:<bytes>"
# back to back (one argument instead of several per event: encoding the arguments is what
# costs the client most). Per stream: its first seq, flags (1: its last event is in this
# batch, 2: set the expiry), the number of record pairs, the number of events, the record's
# fields and values, and one field per event (seqs first, first + 1, ...): a delta's JSON
# string literal (it starts with a quote) or "<event name> <data JSON>".
# Returns one digit per stream: 0 written, 1 a gap (the copy is marked broken), plus 2 when
# another replica asked for its cancellation, plus 4 while another replica reads it (its
# ``watched`` time, Redis's clock in ms, at most WATCHED_FOR_S old); 8 alone when the record
# names another replica (it took the stream over: this one's writes are fenced off). Seqs
# already held are skipped: a batch written twice (a retry after a lost reply) changes nothing.
FLUSH_SCRIPT = """
local WATCHED_FOR_MS = @WATCHED_FOR_MS@
local batch = ARGV[4]
local at = 1
local function field()
  local colon = string.find(batch, ':', at, true)
  local stop = colon + tonumber(string.sub(batch, at, colon - 1))
  at = stop + 1
  return string.sub(batch, colon + 1, stop)
end
local out = {}
local clock = redis.call('TIME')
local now_ms = clock[1] * 1000 + math.floor(clock[2] / 1000)
for s = 1, #KEYS / 2 do
  local events, rec = KEYS[2 * s - 1], KEYS[2 * s]
  local first, flags = tonumber(field()), tonumber(field())
  local nrec, n = tonumber(field()), tonumber(field())
  local known = redis.call('HMGET', rec, 'last', 'cancel', 'watched', 'replica')
  local last = tonumber(known[1] or '0')
  local result = 0
  if known[4] and known[4] ~= ARGV[5] then
    for _ = 1, 2 * nrec + n do field() end
    out[s] = 8
  else
    for _ = 1, nrec do
      redis.call('HSET', rec, field(), field())
    end
    local ended = flags % 2 == 1
    if first > last + 1 then
      redis.call('HSET', rec, 'state', 'broken')
      result = 1
      for _ = 1, n do field() end
    else
      for i = 0, n - 1 do
        local value = field()
        local seq = first + i
        if seq > last then
          local name = 'd'
          if string.byte(value, 1) ~= 34 then
            local space = string.find(value, ' ', 1, true)
            name = string.sub(value, 1, space - 1)
            value = string.sub(value, space + 1)
          end
          redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '0-' .. seq, name, value)
          last = seq
        end
      end
      if ended then
        redis.call('HSET', rec, 'last', last, 'state', 'ended')
        redis.call('HDEL', rec, 'request')  -- for a take-over, which an ended stream never has
      else
        redis.call('HSET', rec, 'last', last)
      end
    end
    if flags >= 2 or result == 1 then
      local ttl = ARGV[1]
      if ended then ttl = ARGV[2] end
      redis.call('PEXPIRE', events, ttl)
      redis.call('PEXPIRE', rec, ttl)
    end
    if known[2] == '1' then result = result + 2 end
    if known[3] and now_ms - tonumber(known[3]) <= WATCHED_FOR_MS then result = result + 4 end
    out[s] = result
  end
end
return table.concat(out)
""".replace("@WATCHED_FOR_MS@", str(round(WATCHED_FOR_S * 1000)))

# KEYS: records. ARGV: the marking replica. Marks streams' copies broken, where the record is
# still there and still that replica's (not one another replica took over meanwhile).
BREAK_SCRIPT = """
for _, rec in ipairs(KEYS) do
  if redis.call('HGET', rec, 'replica') == ARGV[1] then
    redis.call('HSET', rec, 'state', 'broken')
  end
end
return 0
"""

# KEYS: record. Says the stream is read on this replica (Redis's clock, ms), if still known.
WATCH_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then
  local clock = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'watched', clock[1] * 1000 + math.floor(clock[2] / 1000))
end
return 0
"""

# KEYS: record. ARGV: the key prefix of replicas' heartbeats. Returns the record's state,
# context_id, principal, replica, last and cancel (nil where absent), then whether its
# generating replica's heartbeat is there (1/0); {} without a record. Not HGETALL: the record
# also holds the stream's request, a few KB that only a take-over reads.
RECORD_SCRIPT = """
local fields = redis.call(
  'HMGET', KEYS[1], 'state', 'context_id', 'principal', 'replica', 'last', 'cancel')
if not fields[1] then return {} end
local alive = 0
if fields[4] then alive = redis.call('EXISTS', ARGV[1] .. fields[4]) end
table.insert(fields, alive)
return fields
"""

# KEYS: record. ARGV: the key prefix of heartbeats, the replica thought dead, the replica taking
# over, the newest seq the taker holds. Makes the taker the stream's replica (which fences the
# old one off: FLUSH_SCRIPT) and returns the stream's request, if the stream is live, still
# that replica's, that replica's heartbeat is gone and the taker holds every event; else nil.
TAKEOVER_SCRIPT = """
local f = redis.call('HMGET', KEYS[1], 'state', 'replica', 'last', 'request')
if f[1] ~= 'live' or f[2] ~= ARGV[2] or not f[4] then return false end
if tonumber(f[3] or '0') ~= tonumber(ARGV[4]) then return false end
if redis.call('EXISTS', ARGV[1] .. ARGV[2]) == 1 then return false end
redis.call('HSET', KEYS[1], 'replica', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'takeovers', 1)
return f[4]
"""

# KEYS: record. Asks for the stream's cancellation, if it is still known.
CANCEL_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 1
end
return 0
"""
