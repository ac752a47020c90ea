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
 * `ARGV[1..5]` are the calling node's id, the call id, `now` (epoch ms of the
 * caller's clock), the encoded key and the namespace. Numbers that may pass
 * 2^47 (tokens, versions) travel as decimal strings: Lua's default number
 * formatting keeps only 14 digits.
 *
 * A step collects a log of events (for watchers) and notes (for the node of
 * a session it settled). At the end the notes for other nodes are published
 * to each node's channel together with the step's events, the events alone
 * to the broadcast channel, and the caller's own notes and the events go
 * back in the reply, so every node sees one ordered batch per step.
 */
export const LUA_PRELUDE = String.raw`
local K_META, K_HOLD, K_QUEUE, K_WAITER, K_WAIT = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local NODE, CALL, NOW, HKEY, NS = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local DEAD = nil
local log = {}
local noted = {}
local hasEvents = false

local function n2s(n) return string.format('%.0f', n) end

local function micros()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Tokens and versions never go backwards, even after Redis lost the key:
-- each is at least Redis' clock in microseconds.
local function nextToken()
  local last = tonumber(redis.call('HGET', K_META, 'tok') or '0')
  local tok = math.max(last + 1, micros())
  redis.call('HSET', K_META, 'tok', n2s(tok))
  return n2s(tok)
end

local function counts()
  return redis.call('HLEN', K_HOLD), redis.call('ZCARD', K_QUEUE)
end

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
  return redis.call('HGET', K_META, 'mode')
end

local function compatible(mode)
  local cur = heldMode()
  return (not cur) or (mode == 'shared' and cur == 'shared')
end

local function expiry(holdTimeout)
  if holdTimeout == '' then return '' end
  return n2s(NOW + tonumber(holdTimeout))
end

-- Grants a request; a queued one (ticket set, from the queue) is told via a note.
local function grant(s, node, ticket, mode, meta, holdTimeout, queued)
  local hold = { s = s, n = node, i = ticket, t = nextToken(), m = mode, c = n2s(NOW), x = expiry(holdTimeout), d = meta }
  redis.call('HSET', K_HOLD, s, cjson.encode(hold))
  redis.call('HSET', K_META, 'mode', mode)
  if queued then note(node, { y = 'granted', s = s, i = ticket, t = hold.t, x = hold.x }) end
  ev('acquired', hold, hold.t)
  return hold
end

-- Settles the waits for which this was the last live hold.
local function settleWaits(token)
  local all = redis.call('HGETALL', K_WAIT)
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
  redis.call('HDEL', K_HOLD, hold.s)
  if redis.call('HLEN', K_HOLD) == 0 then redis.call('HDEL', K_META, 'mode') end
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
    local head = redis.call('ZRANGE', K_QUEUE, 0, 0)[1]
    if not head then return end
    local w = waiterOf(head)
    if not w then
      redis.call('ZREM', K_QUEUE, head)
    else
      if not compatible(w.m) then return end
      redis.call('ZREM', K_QUEUE, head)
      redis.call('HDEL', K_WAITER, head)
      grant(w.s, w.n, w.i, w.m, w.d, w.ht, true)
    end
  end
end

-- Takes a waiter out of the queue ('dequeued'), then grants what that unblocked.
local function dequeue(w)
  redis.call('ZREM', K_QUEUE, w.s)
  redis.call('HDEL', K_WAITER, w.s)
  ev('dequeued', w, nil)
  drain()
end

-- Publishes the step's batch and returns the reply for the caller.
local function finish(result)
  local h, w = counts()
  if h == 0 and w == 0 and redis.call('HLEN', K_WAIT) == 0 then
    -- Kept a while after the key is idle so a token burst is never reissued.
    if redis.call('EXISTS', K_META) == 1 then redis.call('PEXPIRE', K_META, 3600000) end
  else
    redis.call('PERSIST', K_META)
  end
  local pv, v = '0', '0'
  if hasEvents then
    local last = tonumber(redis.call('HGET', K_META, 'ver') or '0')
    pv = n2s(last)
    v = n2s(math.max(last + 1, micros()))
    redis.call('HSET', K_META, 'ver', v)
  end
  for node, _ in pairs(noted) do
    if node ~= NODE then
      local items = {}
      for _, it in ipairs(log) do
        if it.y == 'ev' or it.node == node then items[#items + 1] = it end
      end
      redis.call('PUBLISH', NS .. ':n:' .. node, cjson.encode({ k = HKEY, pv = pv, v = v, it = items, at = NOW }))
    end
  end
  if hasEvents then
    local items = {}
    for _, it in ipairs(log) do
      if it.y == 'ev' then items[#items + 1] = it end
    end
    redis.call('PUBLISH', NS .. ':e', cjson.encode({ o = NODE, c = CALL, k = HKEY, pv = pv, v = v, it = items, at = NOW }))
  end
  local mine = {}
  for _, it in ipairs(log) do
    if it.y == 'ev' or it.node == NODE then mine[#mine + 1] = it end
  end
  return cjson.encode({ r = result, k = HKEY, pv = pv, v = v, it = mine, at = NOW })
end
`;
