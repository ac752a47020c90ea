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
 * prefix of the channels the step publishes to (`KeyNames#channelPrefix`:
 * the namespace, and the database when it is not 0). Numbers that may pass
 * 2^47 (tokens, versions) travel as decimal strings: Lua's default number
 * formatting keeps only 14 digits.
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
 *
 * Redis' Lua spends more on building tables, `cjson` and `string.format`
 * than on the commands of a step, so the common path makes few of them: a
 * new hold, each log item and the common replies are written as JSON text
 * directly (no table, no `cjson.encode`), the meta fields live in locals,
 * and the clock's decimal text comes from `TIME`'s own strings.
 */
export const LUA_PRELUDE = String.raw`
-- A step's state. The prelude is loaded once as a function library where
-- Redis supports it (its helpers are then built once, not on every call), so
-- begin() resets all of it at the start of each step.
local KEYS, ARGV
local K_META, K_HOLD, K_QUEUE, K_WAITER, K_WAIT
local NODE, CALL, NOW, NOWS, HKEY, CHAN
local DEAD, log, logNode, noted, hasEvents
local clock, clockS, nHold, nQueue, noWaits
-- The meta hash's fields, read on first use (metaRead): token and version
-- as numbers and as their text, the mode of the holders (false: none) as
-- read and as the step leaves it, and whether the token or version moved.
local metaRead, tok, ver, tokS, verS, mode, mode0, moved

local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  K_META, K_HOLD, K_QUEUE, K_WAITER, K_WAIT = keys[1], keys[2], keys[3], keys[4], keys[5]
  NODE, CALL, NOW, HKEY, CHAN = argv[1], argv[2], tonumber(argv[3]), argv[4], argv[5]
  -- NOWS: the caller sends now as an integer's decimal string, the very
  -- text n2s(NOW) would make; kept to spare a string.format.
  NOWS = argv[3]
  -- log: each item's JSON text, in step order; logNode[i]: the node a note
  -- is for (nil for events), made with the step's first note, as is noted.
  DEAD, log, logNode, noted, hasEvents = nil, {}, nil, nil, false
  clock, clockS, nHold, nQueue, noWaits = nil, nil, nil, nil, false
  metaRead = false
end

-- string.format costs Redis' Lua about as much as a redis.call (~0.7 us),
-- so each token and version is formatted once per step: the step keeps the
-- meta fields' text it read and made, and writes back only what changed.
local function n2s(n) return string.format('%.0f', n) end

-- The JSON text of a string: quoted as it is unless it has a character
-- JSON escapes (cjson then writes it). Sessions, modes and meta are
-- checked; tokens, tickets, times and expiries are decimal text the store
-- made.
local function q(s)
  if s == nil then return '""' end
  if string.find(s, '[%c"\\]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end

-- Counts as text: concatenating a number formats it (as string.format
-- does), and counts repeat, so each count's text is made once per library.
local countText = {}
local function int(n)
  local t = countText[n]
  if not t then
    t = tostring(n)
    countText[n] = t
  end
  return t
end

-- Every token and version of a step derives from one reading of Redis'
-- clock. clockS, its decimal text, is joined from TIME's two replies (the
-- microseconds zero-padded to six digits), not formatted: tokens (~1.7e15)
-- have more digits than tostring's 14.
local function micros()
  if not clock then
    local t = redis.call('TIME')
    local us = t[2]
    clock = tonumber(t[1]) * 1000000 + tonumber(us)
    clockS = t[1] .. string.sub('000000', #us + 1) .. us
  end
  return clock
end

-- The meta hash, read on first use; finish() writes back what changed in
-- one HSET. No holders is stored as mode '' (not a deleted field), so a
-- release writes it in that same HSET.
local function readMeta()
  if metaRead then return end
  metaRead = true
  local m = redis.call('HMGET', K_META, 'tok', 'ver', 'mode')
  -- The fields' text as read (only ever written from n2s or clockS, so
  -- canonical), replaced together with the number when a step moves it.
  tokS, verS = m[1] or '0', m[2] or '0'
  tok, ver = tonumber(tokS), tonumber(verS)
  mode = m[3]
  if mode == '' then mode = false end
  mode0, moved = mode, false
end

-- The next of a counter that never goes backwards, even after Redis lost
-- the key: at least Redis' clock in microseconds. Returns it and its text.
local function nextOf(n)
  local c = micros()
  if c > n then return c, clockS end
  return n + 1, n2s(n + 1)
end

local function nextToken()
  readMeta()
  tok, tokS = nextOf(tok)
  moved = true
  return tokS
end

-- Holder and queue counts: read before the step's first write to either
-- (each write calls counts() first), then kept from the replies of the
-- writes (HSET, HDEL, ZADD and ZREM return how many changed). The holders
-- need no HLEN unless they share: mode '' means none, exclusive means one.
local function counts()
  if not nHold then
    readMeta()
    if not mode0 then
      nHold = 0
    elseif mode0 == 'exclusive' then
      nHold = 1
    else
      nHold = redis.call('HLEN', K_HOLD)
    end
    nQueue = redis.call('ZCARD', K_QUEUE)
  end
  return nHold, nQueue
end

-- An event of the step's log, as its JSON text. seq (text): a queued
-- request's arrival seq, so a watch catching up after a gap tells a request
-- that left and queued again from the one it was shown; not sent to clients.
local function ev(kind, s, m, d, token, seq)
  local h, w = counts()
  log[#log + 1] = '{"y":"ev","e":"' .. kind .. '","s":' .. q(s) .. ',"t":"' .. (token or '') .. '","m":' .. q(m)
    .. ',"d":' .. q(d) .. ',"h":' .. int(h) .. ',"w":' .. int(w) .. (seq and (',"o":"' .. seq .. '"}') or '}')
  hasEvents = true
end

-- A note to a node about one of its sessions, as its JSON text.
local function note(node, text)
  if node == DEAD then return end
  local i = #log + 1
  log[i] = text
  if not logNode then logNode, noted = {}, {} end
  logNode[i] = node
  noted[node] = true
end

local function heldMode()
  readMeta()
  return mode
end

local function compatible(m)
  local cur = heldMode()
  return (not cur) or (m == 'shared' and cur == 'shared')
end

local function expiry(holdTimeout)
  if holdTimeout == '' then return '' end
  return n2s(NOW + tonumber(holdTimeout))
end

-- Writes a hold record: the JSON cjson.decode reads back in holdOf.
local function putHold(s, node, ticket, token, m, since, x, meta)
  counts()
  nHold = nHold + (redis.call('HSET', K_HOLD, s, '{"s":' .. q(s) .. ',"n":' .. q(node) .. ',"i":"' .. ticket .. '","t":"' .. token
    .. '","m":' .. q(m) .. ',"c":"' .. since .. '","x":"' .. x .. '","d":' .. q(meta) .. '}'))
end

local function enqueue(seq, s)
  counts()
  nQueue = nQueue + redis.call('ZADD', K_QUEUE, seq, s)
end

local function unqueue(s)
  counts()
  nQueue = nQueue - redis.call('ZREM', K_QUEUE, s)
end

-- Grants a request; a queued one (from the queue) is told via a note.
-- Returns the hold's token and expiry.
local function grant(s, node, ticket, m, meta, holdTimeout, queued)
  local t, x = nextToken(), expiry(holdTimeout)
  putHold(s, node, ticket, t, m, NOWS, x, meta)
  mode = m
  if queued then note(node, '{"y":"granted","s":' .. q(s) .. ',"i":"' .. ticket .. '","t":"' .. t .. '","x":"' .. x .. '"}') end
  ev('acquired', s, m, meta, t)
  return t, x
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
      note(w.n, '{"y":"waitDone","s":' .. q(w.s) .. ',"i":"' .. w.i .. '"}')
    elseif #left < #w.k then
      w.k = left
      redis.call('HSET', K_WAIT, all[i], cjson.encode(w))
    end
  end
end

-- Ends a hold: 'released' by its holder, or taken away (the holder is told).
local function endHold(hold, how)
  counts()
  nHold = nHold - redis.call('HDEL', K_HOLD, hold.s)
  if nHold == 0 then mode = false end
  if how ~= 'released' then note(hold.n, '{"y":"lost","s":' .. q(hold.s) .. ',"t":"' .. hold.t .. '","r":"' .. how .. '"}') end
  ev(how, hold.s, hold.m, hold.d, hold.t)
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
  ev('dequeued', w.s, w.m, w.d, nil)
  drain()
end

-- Writes back the meta fields the step changed, in one command: a step
-- that moved the token or version writes all three (an unchanged field
-- gets its own text again), which spares building an argument list.
local function saveMeta()
  if not metaRead then return end
  if moved then
    redis.call('HSET', K_META, 'tok', tokS, 'ver', verS, 'mode', mode or '')
  elseif mode ~= mode0 then
    redis.call('HSET', K_META, 'mode', mode or '')
  end
end

-- Publishes the step's batch and returns the reply for the caller. Messages
-- are assembled from the items' JSON, each encoded once. The broadcast starts
-- with a plain-text header (origin node, call, key, versions, time) so a
-- node reads it without parsing the items: it skips them when it has no
-- watcher, and skips its own steps' broadcasts, whose reply carried the same.
-- The reply has a plain-text header too, 'pv v cv at notes result' and a
-- newline before the items' JSON array (JSON text never holds a raw
-- newline): notes is 1 when the items hold a note for the caller, so a
-- caller with no watcher on the key parses only the result.
-- result: the reply's JSON text, or a table to encode.
local function finish(result)
  readMeta()
  local pv, v = '0', '0'
  if hasEvents then
    pv = verS
    ver, verS = nextOf(ver)
    moved = true
    v = verS
  end
  -- The key's version after this step, also when it had no events: the
  -- caller answers only after it has applied every step up to it.
  local cv = verS
  saveMeta()
  local h, w = counts()
  if h == 0 and w == 0 and (noWaits or redis.call('HLEN', K_WAIT) == 0) then
    -- Kept a while after the key is idle so a token burst is never reissued
    -- (PEXPIRE of a missing key does nothing).
    redis.call('PEXPIRE', K_META, 3600000)
  else
    redis.call('PERSIST', K_META)
  end
  -- With no notes (the common step) the events are the caller's items too.
  local events, mine
  local mineNoted = '0'
  if not logNode then
    events = table.concat(log, ',')
    mine = events
  else
    local evs, my = {}, {}
    for i, text in ipairs(log) do
      local node = logNode[i]
      if not node then
        evs[#evs + 1] = text
        my[#my + 1] = text
      elseif node == NODE then
        my[#my + 1] = text
        mineNoted = '1'
      end
    end
    events, mine = table.concat(evs, ','), table.concat(my, ',')
  end
  if noted then
    local head = '{"k":"' .. HKEY .. '","pv":"' .. pv .. '","v":"' .. v .. '","at":' .. NOWS .. ',"it":['
    for node, _ in pairs(noted) do
      if node ~= NODE then
        local items = {}
        for i, text in ipairs(log) do
          local to = logNode[i]
          if not to or to == node then items[#items + 1] = text end
        end
        redis.call('PUBLISH', CHAN .. ':n:' .. node, head .. table.concat(items, ',') .. ']}')
      end
    end
  end
  if hasEvents then
    redis.call('PUBLISH', CHAN .. ':e', NODE .. ' ' .. CALL .. ' ' .. HKEY .. ' ' .. pv .. ' ' .. v .. ' ' .. NOWS .. ' [' .. events .. ']')
  end
  if type(result) ~= 'string' then result = cjson.encode(result) end
  return pv .. ' ' .. v .. ' ' .. cv .. ' ' .. NOWS .. ' ' .. mineNoted .. ' ' .. result .. '\n[' .. mine .. ']'
end
`;
