import { createHash } from 'node:crypto';
import { LUA_PRELUDE } from './lua-prelude.js';

/**
 * The store's scripts as one Redis function library (Redis 7+): the prelude
 * and every script body, loaded once per Redis server with `FUNCTION LOAD`.
 * Its name carries a hash of its source, so nodes of different versions can
 * share a Redis.
 */
export interface ScriptLibrary {
  readonly name: string;
  readonly source: string;
}

/** A Lua script: its function in the library, and the same as a standalone EVAL script with its SHA1. */
export interface Script {
  readonly name: string;
  /** The function's name in `library`, for FCALL. */
  readonly fn: string;
  readonly library: ScriptLibrary;
  /** The prelude and body as one script, for EVALSHA where Redis has no functions. */
  readonly source: string;
  readonly sha: string;
}

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

/**
 * A script is the prelude then its body, run after `begin()` set the step's
 * keys and arguments. As an EVAL script the prelude's helpers are built anew
 * on every call (a few microseconds of Redis' time per call, about a third
 * of a short step); in the function library they are built once at load.
 * `guard` goes between `begin()` and the body of the EVAL script only (see
 * `OOM_GUARD`).
 */
function script(name: string, body: string, guard = ''): Omit<Script, 'fn' | 'library'> & { body: string } {
  const source = `local EVAL_KEYS, EVAL_ARGV = KEYS, ARGV\n${LUA_PRELUDE}\nbegin(EVAL_KEYS, EVAL_ARGV)\n${guard}${body}`;
  return { name, body, source, sha: sha1(source) };
}

/**
 * The first command of the EVAL form of a script that may grow memory. An
 * EVAL script carries no `#!lua` flags line (see `LETS_GO`), and Redis then
 * refuses a command that may grow memory (`denyoom`) only while the script
 * has written nothing yet: an acquire that steals, or that first drops a
 * hold its session left under a given-up node id, deletes a record (HDEL)
 * and would then go on to grant while Redis is full. This ZADD is such a
 * command that changes nothing (`XX`: only a member already there, `INCR 0`:
 * its score plus 0), so the script is refused, before anything, exactly
 * when Redis is full as it starts - as its function is.
 */
const OOM_GUARD = "redis.call('ZADD', K_QUEUE, 'XX', 'INCR', 0, '')\n";

/**
 * `acquire`. ARGV[6..]: session, ticket, mode, acquireTimeout ('' none),
 * holdTimeout ('' none), steal ('1'), meta JSON ('' none), session full ('1'
 * when it already holds or waits for maxLocksPerSession keys), maxWaitersPerKey.
 * Checks run in the memory store's order, so the same request fails the same way.
 * On a single server KEYS[6] is the caller's liveness key: when it is gone
 * (Redis was flushed or restarted) nothing is granted and the node recovers first.
 * A hold or queued request of the session under another node id is left from
 * an id its node gave up (session ids are unique to a node), whose sessions
 * were told it ended: it is dropped first, as that id's cleanup drops it,
 * never answered as the session's.
 */
const ACQUIRE = script(
  'acquire',
  String.raw`
local s, ticket, mode, acqT, holdT = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local steal, meta, full, maxW = ARGV[11] == '1', ARGV[12], ARGV[13] == '1', tonumber(ARGV[14])
-- On a single server the caller's liveness key comes along: gone means Redis lost its state.
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 0 then return finish({ err = 'lost_state' }) end
local held = holdOf(s)
if held and held.n ~= NODE then
  endHold(held, 'released')
  drain()
  held = nil
end
if held then
  if held.m ~= mode then return finish({ err = 'mode', m = held.m }) end
  return finish({ st = 'granted', t = held.t, x = held.x, i = held.i })
end
local waiting = waiterOf(s)
if waiting then
  if waiting.n == NODE then return finish({ err = 'queued' }) end
  dequeue(waiting)
end
local _, qlen = counts()
local grantable = steal or (qlen == 0 and compatible(mode))
if not grantable and acqT == '0' then return finish({ st = 'not_granted' }) end
if full then return finish({ err = 'too_many_locks' }) end
if not grantable and qlen >= maxW then return finish({ err = 'too_many_waiters' }) end
if not grantable then
  local seq = redis.call('HINCRBY', K_META, 'seq', 1)
  -- The meta hash can be lost alone while the queue stays (an allkeys-*
  -- maxmemory policy evicts keys one at a time): the counter would start
  -- over below the queue's scores and this request would be granted before
  -- earlier ones. So it is at least one more than the last queued seq. A
  -- counter that started over answers 1, so only then is the queue read.
  if qlen > 0 and seq == 1 then
    local last = tonumber(redis.call('ZRANGE', K_QUEUE, -1, -1, 'WITHSCORES')[2])
    if last and seq <= last then
      seq = last + 1
      redis.call('HSET', K_META, 'seq', n2s(seq))
    end
  end
  local w = { s = s, n = NODE, i = ticket, m = mode, c = NOWS, d = meta, ht = holdT }
  enqueue(seq, s)
  redis.call('HSET', K_WAITER, s, cjson.encode(w))
  ev('queued', s, mode, meta, nil, n2s(seq))
  return finish({ st = 'queued', p = qlen + 1 })
end
if steal then
  for _, victim in ipairs(holdsInOrder()) do endHold(victim, 'stolen') end
end
local t, x = grant(s, NODE, ticket, mode, meta, holdT, false)
return finish('{"st":"granted","t":"' .. t .. '","x":"' .. x .. '","i":"' .. ticket .. '"}')
`,
  OOM_GUARD,
);

/** `release`. ARGV[6]: session. A hold of the session under another node id is not its (see `acquire`). */
const RELEASE = script(
  'release',
  String.raw`
local hold = holdOf(ARGV[6])
if not hold or hold.n ~= NODE then return finish({ err = 'not_holder' }) end
endHold(hold, 'released')
drain()
return finish('{"ok":1}')
`,
);

/**
 * `extend`. ARGV[6..]: session, holdTimeout ('' none). A hold of the session
 * under another node id is not its (see `acquire`). The expiry always moves:
 * one that would come out the same (the same length within the millisecond,
 * or a wall clock stepped back by the time since) is set 1 ms later, since
 * `expire` knows a grant or extend by its expiry alone, and the timer of the
 * old one (its node never heard this answer) must not end the hold.
 */
const EXTEND = script(
  'extend',
  String.raw`
local hold = holdOf(ARGV[6])
if not hold or hold.n ~= NODE then return finish({ err = 'not_holder' }) end
local x = expiry(ARGV[7])
if x ~= '' and x == hold.x then x = n2s(tonumber(x) + 1) end
hold.x = x
putHold(hold.s, hold.n, hold.i, hold.t, hold.m, hold.c, hold.x, hold.d)
return finish({ t = hold.t, x = hold.x })
`,
  OOM_GUARD,
);

/**
 * Hold timeout. ARGV[6..]: session, token, the expiry the caller's timer was
 * armed for. The caller times the hold on its monotonic clock, so no clock
 * is compared here: the hold ends if it is that grant and still has that
 * expiry. An extend since moved it: the reply is `x`, the current expiry,
 * and the hold stays.
 */
const EXPIRE = script(
  'expire',
  String.raw`
local hold = holdOf(ARGV[6])
if not hold or hold.t ~= ARGV[7] then return finish({ gone = 1 }) end
if hold.x ~= ARGV[8] then return finish({ x = hold.x }) end
endHold(hold, 'expired')
drain()
return finish({ ok = 1 })
`,
);

/** `wait`. ARGV[6..]: session, ticket. Records the holds present now; `free` when there are none. */
const WAIT = script(
  'wait',
  String.raw`
local holds = holdsInOrder()
if #holds == 0 then return finish({ free = 1 }) end
local tokens = {}
for i, h in ipairs(holds) do tokens[i] = h.t end
redis.call('HSET', K_WAIT, NODE .. '/' .. ARGV[7], cjson.encode({ s = ARGV[6], n = NODE, i = ARGV[7], k = tokens }))
return finish({ pending = 1 })
`,
  OOM_GUARD,
);

/**
 * Removes a pending request of the caller's node if it is still pending:
 * cancel, acquire timeout and wait timeout. ARGV[6..]: session, ticket, kind
 * ('a' acquire, 'w' wait). Replies `ok = 1` when it removed it, so a timeout
 * and a grant never both happen.
 */
const UNQUEUE = script(
  'unqueue',
  String.raw`
local s, ticket, kind = ARGV[6], ARGV[7], ARGV[8]
if kind == 'w' then
  return finish({ ok = redis.call('HDEL', K_WAIT, NODE .. '/' .. ticket) })
end
local w = waiterOf(s)
if not w or w.i ~= ticket or w.n ~= NODE then return finish({ ok = 0 }) end
dequeue(w)
return finish({ ok = 1 })
`,
);

/** `revoke`: takes the key from every holder (`lost` revoked) and grants the queue. */
const REVOKE = script(
  'revoke',
  String.raw`
local holds = holdsInOrder()
for _, hold in ipairs(holds) do endHold(hold, 'revoked') end
drain()
return finish({ n = #holds })
`,
);

/**
 * Ends what sessions have on this key, in two phases over all of their keys:
 * phase 'q' drops queued requests and waits, phase 'h' ends holds.
 * ARGV[6..]: phase, who ('s' one session of the caller's node, 'n' every
 * session of a dead node), the session or node id, and how phase 'h' ends
 * the holds: 'released' (the default) or 'revoked' (each holder noted
 * `lost`), and for one session the expiry its node found due ('' none): a
 * hold that still has it ends 'expired' (noted `lost`), as the `expire` its
 * timer would have sent. Phase 'h' answers the token of the last hold it
 * ended in `t`, and how it ended in `r`.
 */
const DROP = script(
  'drop',
  String.raw`
local phase, who, id, how, due = ARGV[6], ARGV[7], ARGV[8], ARGV[9] or 'released', ARGV[10] or ''
local ended, endedHow = '', how
local function mine(rec)
  if who == 'n' then return rec.n == id end
  return rec.s == id and rec.n == NODE
end
if who == 'n' then DEAD = id end
if phase == 'q' then
  local ids = redis.call('ZRANGE', K_QUEUE, 0, -1)
  for _, s in ipairs(ids) do
    local w = waiterOf(s)
    if w and mine(w) then
      unqueue(w.s)
      redis.call('HDEL', K_WAITER, w.s)
      ev('dequeued', w.s, w.m, w.d, nil)
    end
  end
  local all = redis.call('HGETALL', K_WAIT)
  for i = 1, #all, 2 do
    if mine(cjson.decode(all[i + 1])) then redis.call('HDEL', K_WAIT, all[i]) end
  end
else
  for _, hold in ipairs(holdsInOrder()) do
    if mine(hold) then
      endedHow = (due ~= '' and hold.x == due) and 'expired' or how
      endHold(hold, endedHow)
      ended = hold.t
    end
  end
end
drain()
return finish({ ok = 1, t = ended, r = endedHow })
`,
);

/**
 * Where a request or hold of the caller's node stands, to reconcile after a
 * lost notification. ARGV[6..]: session, kind ('a' acquire by ticket, 'w' wait
 * by ticket, 'h' hold by token), ticket or token.
 */
const PROBE = script(
  'probe',
  String.raw`
local s, kind, id = ARGV[6], ARGV[7], ARGV[8]
if kind == 'w' then
  return cjson.encode({ st = redis.call('HEXISTS', K_WAIT, NODE .. '/' .. id) == 1 and 'pending' or 'gone' })
end
local hold = holdOf(s)
if kind == 'h' then
  return cjson.encode({ st = (hold and hold.t == id) and 'held' or 'gone' })
end
if hold and hold.i == id and hold.n == NODE then return cjson.encode({ st = 'granted', t = hold.t, x = hold.x }) end
local w = waiterOf(s)
if w and w.i == id and w.n == NODE then return cjson.encode({ st = 'queued' }) end
return cjson.encode({ st = 'gone' })
`,
);

/** The key's state for `status`/`list`/`watch`: holders in grant order, the queue, the event version. */
const STATUS = script(
  'status',
  String.raw`
local ids = redis.call('ZRANGE', K_QUEUE, 0, -1, 'WITHSCORES')
local queue = {}
for i = 1, #ids, 2 do
  local w = waiterOf(ids[i])
  -- The score is the arrival seq the acquire gave the request.
  if w then
    w.o = ids[i + 1]
    queue[#queue + 1] = w
  end
end
return cjson.encode({ h = holdsInOrder(), q = queue, v = redis.call('HGET', K_META, 'ver') or '0' })
`,
);

const bodies = {
  acquire: ACQUIRE,
  release: RELEASE,
  extend: EXTEND,
  expire: EXPIRE,
  wait: WAIT,
  unqueue: UNQUEUE,
  revoke: REVOKE,
  drop: DROP,
  probe: PROBE,
  status: STATUS,
} as const;

export type ScriptName = keyof typeof bodies;

/**
 * Scripts that only read: registered with the `no-writes` flag, so Redis
 * runs them also when it is out of memory and refuses writes (a function
 * without flags may write, and is refused then). As EVAL scripts they carry
 * no `#!lua` flags line, which Redis before 7.0 (where EVALSHA is the path)
 * cannot read: a script without one runs under OOM as long as it calls no
 * command that may grow memory, which these never do.
 */
const READ_ONLY: ReadonlySet<ScriptName> = new Set<ScriptName>(['probe', 'status']);

/**
 * Scripts that only let go: registered with the `allow-oom` flag, so a
 * holder, a waiter, a closing connection, a hold timeout and the cleanup of
 * a dead node can let go while Redis is full (`maxmemory` with
 * `noeviction`). Each frees more than it takes: it deletes hold, waiter and
 * wait records, and what it writes besides is a grant to the queue's head
 * (its waiter record moves into the holders hash), the rest of a wait's
 * tokens, the meta hash's fields (already there) and PUBLISHes.
 *
 * - `release`, `expire` (hold timeout): end one hold, grant the queue.
 * - `unqueue` (cancel, acquire and wait timeouts): removes one queued
 *   request or pending wait, grants what that unblocked.
 * - `drop` (a session's end; a dead node's sessions): removes queued
 *   requests and waits, then ends holds and grants the queue.
 * - `revoke`: ends every hold of the key and grants the queue, as a release
 *   of each; an operator's way to free a stuck key must not need room.
 *
 * `acquire` (queues or grants a new record), `extend` (rewrites a hold) and
 * `wait` (adds a wait record) may grow memory and have no flag: Redis
 * refuses them with `OOM` then, before they run.
 *
 * As EVAL scripts (no flags line, see `READ_ONLY`), Redis refuses a command
 * that may grow memory only until the script's first write: each of these
 * deletes first (HDEL or ZREM; a step that finds nothing of its own to
 * delete writes only PEXPIRE or PERSIST, which are never refused), so they
 * run while Redis is full just as the functions do, and the others carry
 * `OOM_GUARD` to be refused as their functions are.
 */
const LETS_GO: ReadonlySet<ScriptName> = new Set<ScriptName>(['release', 'expire', 'unqueue', 'drop', 'revoke']);

/** The library's registrations of every script, under the library's name `lib`. */
function registrations(names: readonly ScriptName[], lib: string): string {
  return names
    .map((n) => {
      const fn = `function(keys, argv)\nbegin(keys, argv)\n${bodies[n].body}\nend`;
      const flag = READ_ONLY.has(n) ? 'no-writes' : LETS_GO.has(n) ? 'allow-oom' : null;
      if (flag === null) return `redis.register_function('${lib}_${n}', ${fn})`;
      return `redis.register_function{function_name = '${lib}_${n}', callback = ${fn}, flags = { '${flag}' }}`;
    })
    .join('\n');
}

function buildLibrary(): { library: ScriptLibrary; scripts: Record<ScriptName, Script> } {
  const names = Object.keys(bodies) as ScriptName[];
  // Over the whole library (flags included), so a library that differs in anything has another name.
  const hash = sha1(`${LUA_PRELUDE}\n${registrations(names, '')}`).slice(0, 12);
  const libName = `lockwire_${hash}`;
  const library: ScriptLibrary = { name: libName, source: `#!lua name=${libName}\n${LUA_PRELUDE}\n${registrations(names, libName)}\n` };
  const scripts = {} as Record<ScriptName, Script>;
  for (const n of names) {
    const { source, sha } = bodies[n];
    scripts[n] = { name: n, fn: `${libName}_${n}`, library, source, sha };
  }
  return { library, scripts };
}

const built = buildLibrary();

/** The function library holding every script. */
export const scriptLibrary: ScriptLibrary = built.library;

/** Every script of the store, by name. */
export const scripts: Readonly<Record<ScriptName, Script>> = built.scripts;
