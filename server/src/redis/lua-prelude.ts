/**
 * The Lua shared by every state-changing script of the Redis store. Each
 * script is this prelude followed by its own body, run as one atomic
 * EVALSHA over the five keys of one lock key (all in one hash slot):
 *
 * - `KEYS[1]` meta hash: `tok` (last fencing token), `ver` (last event
 *   version), `seq` (queue arrival counter), `mode` (mode of the holders);
 * - `KEYS[2]` holders hash: session -> hold record (JSON);
 * - `KEYS[3]` queue sorted set: session scored by arrival `seq`;
 * - `KEYS[4]` waiters hash: session -> queued request record (JSON);
 * - `KEYS[5]` waits hash: `node/ticket` -> pending `wait` record (JSON).
 *
 * `ARGV[1..5]` (the step's `argv`) are the calling node's id, the call id,
 * `now` (epoch ms of the caller's clock, an integer), the encoded key and the
 * namespace. Numbers that may pass 2^47 (tokens, versions) travel as decimal
 * strings: Lua's default number formatting keeps only 14 digits.
 *
 * A step collects a log of events (for watchers) and notes (for the node of
 * a session it settled). At the end the notes for other nodes are published
 * to each node's channel together with the step's events, the events alone
 * to the broadcast channel, and the caller's own notes and the events go
 * back in the reply, so every node sees one ordered batch per step.
 *
 * Every script call costs Redis a few microseconds per `redis.call`, so the
 * prelude keeps the calls per step few: the clock is read once, the meta
 * hash is read with one HMGET and written with one HSET, the holder and
 * queue counts are kept from the replies of the writes, and each log item is
 * JSON-encoded once and shared by the reply and every message.
 */
export const LUA_PRELUDE = String.raw`
-- A step's state. The prelude is loaded once as a function library where
-- Redis supports it (its helpers are then built once, not on every call), so
-- begin() resets all of it at the start of each step.
local KEYS, ARGV
local K_META, K_HOLD, K_QUEUE, K_WAITER, K_WAIT
local NODE, CALL, NOW, NOWS, HKEY, NS
local DEAD, log, noted, hasEvents
local clock, km, nHold, nQueue, noWaits

local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  K_META, K_HOLD, K_QUEUE, K_WAITER, K_WAIT = keys[1], keys[2], keys[3], keys[4], keys[5]
  NODE, CALL, NOW, HKEY, NS = argv[1], argv[2], tonumber(argv[3]), argv[4], argv[5]
  -- NOWS: the caller sends now as an integer's decimal string, the very
  -- text n2s(NOW) would make; kept to spare a string.format.
  NOWS = argv[3]
  DEAD, log, noted, hasEvents = nil, {}, {}, false
  clock, km, nHold, nQueue, noWaits = nil, nil, nil, nil, false
end

-- string.format costs Redis' Lua about as much as a redis.call (~0.7 us),
-- so each token and version is formatted once per step: the meta hash keeps
-- the strings it read and the ones it made, and writes back only the fields
-- that changed.
local function n2s(n) return string.format('%.0f', n) end

-- Every token and version of a step derives from one reading of Redis' clock.
local function micros()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return clock
end

-- The meta hash, read on first use; finish() writes back what changed in
-- one HSET. No holders is stored as mode '' (not a deleted field), so a
-- release writes it in that same HSET.
local function keyMeta()
  if not km then
    local m = redis.call('HMGET', K_META, 'tok', 'ver', 'mode')
    local mode = m[3]
    if mode == '' then mode = false end
    -- tokS/verS: the fields' text as read (only ever written from n2s, so
    -- canonical), replaced together with the number when a step moves it.
    km = { tok = tonumber(m[1] or '0'), ver = tonumber(m[2] or '0'), tokS = m[1] or '0', verS = m[2] or '0',
      tokDirty = false, verDirty = false, mode = mode, mode0 = mode }
  end
  return km
end

-- Tokens and versions never go backwards, even after Redis lost the key:
-- each is at least Redis' clock in microseconds.
local function nextToken()
  local m = keyMeta()
  m.tok = math.max(m.tok + 1, micros())
  m.tokS = n2s(m.tok)
  m.tokDirty = true
  return m.tokS
end

-- Holder and queue counts: read once, then kept from the replies of the
-- writes that change them (HSET, HDEL, ZADD and ZREM return how many changed).
local function counts()
  if not nHold then
    nHold = redis.call('HLEN', K_HOLD)
    nQueue = redis.call('ZCARD', K_QUEUE)
  end
  return nHold, nQueue
end
local function holdsChanged(n) if nHold then nHold = nHold + n end end
local function queueChanged(n) if nQueue then nQueue = nQueue + n end end

local function ev(kind, rec, token)
  local h, w = counts()
  log[#log + 1] = { y = 'ev', e = kind, s = rec.s, t = token or '', m = rec.m, d = rec.d, h = h, w = w }
  hasEvents = true
end

local function note(node, item)
  if node == DEAD then return end
  item.node = node
  log[#log + 1] = item
  noted[node] = true
end

local function heldMode()
  return keyMeta().mode
end

local function compatible(mode)
  local cur = heldMode()
  return (not cur) or (mode == 'shared' and cur == 'shared')
end

local function expiry(holdTimeout)
  if holdTimeout == '' then return '' end
  return n2s(NOW + tonumber(holdTimeout))
end

local function putHold(hold)
  holdsChanged(redis.call('HSET', K_HOLD, hold.s, cjson.encode(hold)))
end

local function enqueue(seq, s)
  queueChanged(redis.call('ZADD', K_QUEUE, seq, s))
end

local function unqueue(s)
  queueChanged(-redis.call('ZREM', K_QUEUE, s))
end

-- Grants a request; a queued one (ticket set, from the queue) is told via a note.
local function grant(s, node, ticket, mode, meta, holdTimeout, queued)
  local hold = { s = s, n = node, i = ticket, t = nextToken(), m = mode, c = NOWS, x = expiry(holdTimeout), d = meta }
  putHold(hold)
  keyMeta().mode = mode
  if queued then note(node, { y = 'granted', s = s, i = ticket, t = hold.t, x = hold.x }) end
  ev('acquired', hold, hold.t)
  return hold
end

-- Settles the waits for which this was the last live hold.
-- noWaits: the waits hash was found empty this step (no step that ends
-- holds adds waits), so further holds ended need not read it again.
local function settleWaits(token)
  if noWaits then return end
  local all = redis.call('HGETALL', K_WAIT)
  if #all == 0 then
    noWaits = true
    return
  end
  for i = 1, #all, 2 do
    local w = cjson.decode(all[i + 1])
    local left = {}
    for _, t in ipairs(w.k) do
      if t ~= token then left[#left + 1] = t end
    end
    if #left == 0 then
      redis.call('HDEL', K_WAIT, all[i])
      note(w.n, { y = 'waitDone', s = w.s, i = w.i })
    elseif #left < #w.k then
      w.k = left
      redis.call('HSET', K_WAIT, all[i], cjson.encode(w))
    end
  end
end

-- Ends a hold: 'released' by its holder, or taken away (the holder is told).
local function endHold(hold, how)
  holdsChanged(-redis.call('HDEL', K_HOLD, hold.s))
  if counts() == 0 then keyMeta().mode = false end
  if how ~= 'released' then note(hold.n, { y = 'lost', s = hold.s, t = hold.t, r = how }) end
  ev(how, hold, hold.t)
  settleWaits(hold.t)
end

local function holdOf(s)
  local raw = redis.call('HGET', K_HOLD, s)
  if raw then return cjson.decode(raw) end
  return nil
end

local function waiterOf(s)
  local raw = redis.call('HGET', K_WAITER, s)
  if raw then return cjson.decode(raw) end
  return nil
end

local function holdsInOrder()
  local all = redis.call('HVALS', K_HOLD)
  local holds = {}
  for i, raw in ipairs(all) do holds[i] = cjson.decode(raw) end
  table.sort(holds, function(a, b) return tonumber(a.t) < tonumber(b.t) end)
  return holds
end

-- Grants the queue's head while it is compatible with the holders: one
-- exclusive request, or a run of shared ones up to the first exclusive.
local function drain()
  while true do
    local _, queued = counts()
    if queued == 0 then return end
    local head = redis.call('ZRANGE', K_QUEUE, 0, 0)[1]
    if not head then return end
    local w = waiterOf(head)
    if not w then
      unqueue(head)
    else
      if not compatible(w.m) then return end
      unqueue(head)
      redis.call('HDEL', K_WAITER, head)
      grant(w.s, w.n, w.i, w.m, w.d, w.ht, true)
    end
  end
end

-- Takes a waiter out of the queue ('dequeued'), then grants what that unblocked.
local function dequeue(w)
  unqueue(w.s)
  redis.call('HDEL', K_WAITER, w.s)
  ev('dequeued', w, nil)
  drain()
end

-- Writes back the meta fields the step changed, in one command.
local function saveMeta()
  if not km then return end
  local set = {}
  if km.tokDirty then
    set[#set + 1] = 'tok'
    set[#set + 1] = km.tokS
  end
  if km.verDirty then
    set[#set + 1] = 'ver'
    set[#set + 1] = km.verS
  end
  if km.mode ~= km.mode0 then
    set[#set + 1] = 'mode'
    set[#set + 1] = km.mode or ''
  end
  if #set > 0 then redis.call('HSET', K_META, unpack(set)) end
end

-- Publishes the step's batch and returns the reply for the caller. Messages
-- are assembled from the items' JSON, each encoded once. The broadcast starts
-- with a plain-text header (origin node, call, key, versions, time) so a
-- node reads it without parsing the items: it skips them when it has no
-- watcher, and skips its own steps' broadcasts, whose reply carried the same.
local function finish(result)
  local pv, v = '0', '0'
  if hasEvents then
    local m = keyMeta()
    pv = m.verS
    m.ver = math.max(m.ver + 1, micros())
    m.verS = n2s(m.ver)
    m.verDirty = true
    v = m.verS
  end
  -- The key's version after this step, also when it had no events: the
  -- caller answers only after it has applied every step up to it.
  local cv = v
  if not hasEvents then cv = keyMeta().verS end
  saveMeta()
  local h, w = counts()
  if h == 0 and w == 0 and (noWaits or redis.call('HLEN', K_WAIT) == 0) then
    -- Kept a while after the key is idle so a token burst is never reissued
    -- (PEXPIRE of a missing key does nothing).
    redis.call('PEXPIRE', K_META, 3600000)
  else
    redis.call('PERSIST', K_META)
  end
  local enc = {}
  local events = {}
  local mine = {}
  for i, it in ipairs(log) do
    enc[i] = cjson.encode(it)
    if it.y == 'ev' then
      events[#events + 1] = enc[i]
      mine[#mine + 1] = enc[i]
    elseif it.node == NODE then
      mine[#mine + 1] = enc[i]
    end
  end
  local head = '{"k":"' .. HKEY .. '","pv":"' .. pv .. '","v":"' .. v .. '","at":' .. ARGV[3] .. ',"it":['
  for node, _ in pairs(noted) do
    if node ~= NODE then
      local items = {}
      for i, it in ipairs(log) do
        if it.y == 'ev' or it.node == node then items[#items + 1] = enc[i] end
      end
      redis.call('PUBLISH', NS .. ':n:' .. node, head .. table.concat(items, ',') .. ']}')
    end
  end
  if hasEvents then
    redis.call('PUBLISH', NS .. ':e',
      NODE .. ' ' .. CALL .. ' ' .. HKEY .. ' ' .. pv .. ' ' .. v .. ' ' .. ARGV[3] .. ' [' .. table.concat(events, ',') .. ']')
  end
  return head .. table.concat(mine, ',') .. '],"cv":"' .. cv .. '","r":' .. cjson.encode(result) .. '}'
end
`;
