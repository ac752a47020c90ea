import { describe, expect, it } from 'vitest';
import { useConformance, type Conformance } from './conformance-context.js';
import type { ConformanceTarget } from './conformance-target.js';
import { memoryTarget } from './memory-target.js';
import type { Frame, RawClient } from './raw-client.js';

/** A linear congruential generator: the same seed gives the same sequence in [0, 1). */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Picks an item of `list` with `next`; fails on an empty list. */
export function pickWith<T>(next: () => number, list: readonly T[]): T {
  const item = list[Math.floor(next() * list.length)];
  if (item === undefined) throw new Error('picked from an empty list');
  return item;
}

// Seeded programs of three sessions on two nodes contending for three keys:
// acquires of both modes (try-once, timed or unbounded waits, hold timeouts,
// steals, meta), releases, extends, cancels, waits, statuses, sessions closed
// or cut and replaced, and the clock moved on time or with timers running
// late. A watcher of the keys' prefix and a second observer on the other node
// stay connected throughout.
//
// Each step is settled before the next: its own answer (`queued` or the
// reply) is awaited, then every key's `status` is read through both nodes
// (a node answers it only once its own steps of the key are done) and every
// session pings (answered after the notes and events owed to it), until a
// round brings nothing new. So a step's effects are compared with the step
// they belong to, and the clock moves only once the table is quiet.

const UNIT = 1000;
const KEYS = ['k1', 'k2', 'k3'];
const STEPS = 28;
/** How long any awaited frame may take. */
const WAIT = 3000;
/** Deadlines of one key closer than this are a tie: their order is the timers', not the stores'. */
const TIE = 10;
const ENDS = new Set(['released', 'expired', 'stolen', 'revoked']);

type Request = Record<string, unknown> & { op: string };

interface Hold {
  readonly token: number;
  readonly mode: string;
  expiresAt: number | null;
}

interface Pending {
  readonly op: string;
  readonly key: string;
  readonly deadline: number | null;
  queued: boolean;
}

interface Deadline {
  readonly at: number;
  readonly kind: 'hold' | 'acquire' | 'wait';
  readonly actor: Actor;
  readonly key: string;
}

/** A connected session and what its frames so far say it holds and waits for. */
class Actor {
  readonly holds = new Map<string, Hold>();
  readonly pending = new Map<string, Pending>();
  /** The program's requests by id. */
  readonly sent = new Map<string, Request>();
  /** Tokens told lost, per key: a grant answered after its loss stays lost. */
  readonly lostTokens = new Set<string>();
  ids = 0;
  /** Frames of `client.messages` already taken into account. */
  read = 0;
  live = true;

  constructor(
    readonly name: string,
    readonly client: RawClient,
    readonly node: number,
  ) {}
}

interface Seen {
  readonly step: number;
  readonly actor: Actor;
  readonly frame: Frame;
}

/** What a run showed, normalised so that two stores' runs of one program compare equal. */
export interface Outcome {
  steps: string[];
  replies: Record<string, string[]>;
  lost: Record<string, string[]>;
  events: Record<string, string[]>;
  table: unknown;
}

const isBarrier = (frame: Frame) => frame.type === 'reply' && typeof frame.id === 'string' && frame.id.startsWith('b');

/**
 * Runs seed `seed`'s program on `ctx` under fresh keys and returns what it
 * showed: each request's answers, each session's losses and each key's
 * events (all by the step they came in), and the final table, normalised so
 * that two stores' runs of one program compare equal. Each key's events are
 * kept apart, so only their order within a key is compared.
 */
export async function runSessions(ctx: Conformance, seed: number): Promise<Outcome> {
  const next = random(seed);
  const pick = <T>(list: readonly T[]): T => pickWith(next, list);
  const prefix = `s${seed}/`;
  const keys = KEYS.map((k) => prefix + k);
  const start = ctx.now();
  const names = new Map<string, string>();
  const everyone: Actor[] = [];
  const seen: Seen[] = [];
  const steps: string[] = [];
  let step = 0;
  let barriers = 0;
  let connects = 0;

  const connect = async (name: string): Promise<Actor> => {
    // ctx.connect goes round-robin over the nodes in the same order.
    const node = connects++ % 2;
    const client = await ctx.connect();
    const actor = new Actor(name, client, node);
    names.set(client.session, name);
    everyone.push(actor);
    return actor;
  };

  const watcher = await connect('W');
  const observer = await connect('O');
  await watcher.client.request({ op: 'watch', id: 'b0', prefix }, { timeout: WAIT });
  const actors = [await connect('A'), await connect('B'), await connect('C')];
  let named = actors.length;

  const barrier = (actor: Actor, request: Request) =>
    actor.client.request({ ...request, id: `b${++barriers}` }, { timeout: WAIT });

  const programFrames = () => everyone.reduce((n, a) => n + a.client.messages.filter((m) => !isBarrier(m)).length, 0);

  /** Takes the frames that arrived since the last look into the record and into each actor's state. */
  const absorb = () => {
    for (const actor of everyone) {
      const messages = actor.client.messages;
      for (; actor.read < messages.length; actor.read++) {
        const frame = messages[actor.read];
        if (frame === undefined || isBarrier(frame) || frame.type === 'welcome') continue;
        seen.push({ step, actor, frame });
        track(actor, frame);
      }
    }
  };

  const track = (actor: Actor, frame: Frame) => {
    const id = String(frame.id);
    if (frame.type === 'queued') {
      const pending = actor.pending.get(id);
      if (pending) pending.queued = true;
    } else if (frame.type === 'lost') {
      const key = String(frame.key);
      actor.lostTokens.add(`${key} ${String(frame.token)}`);
      if (actor.holds.get(key)?.token === frame.token) actor.holds.delete(key);
    } else if (frame.type === 'reply') {
      const request = actor.sent.get(id);
      if (!request) return;
      const key = String(request.key);
      if (request.op === 'acquire' || request.op === 'wait') actor.pending.delete(id);
      if (!frame.ok) return;
      if (request.op === 'acquire' && frame.acquired === true) {
        if (actor.lostTokens.has(`${key} ${String(frame.token)}`)) return;
        actor.holds.set(key, {
          token: Number(frame.token),
          mode: String(request.mode ?? 'exclusive'),
          expiresAt: typeof frame.expiresAt === 'number' ? frame.expiresAt : null,
        });
      } else if (request.op === 'release') {
        actor.holds.delete(key);
      } else if (request.op === 'extend') {
        const hold = actor.holds.get(key);
        if (hold) hold.expiresAt = typeof frame.expiresAt === 'number' ? frame.expiresAt : null;
      }
    }
  };

  const settle = async () => {
    for (let round = 0; ; round++) {
      if (round === 8) throw new Error(`step ${step} did not settle`);
      const before = programFrames();
      await Promise.all(keys.flatMap((key) => [watcher, observer].map((o) => barrier(o, { op: 'status', key }))));
      await Promise.all(everyone.filter((a) => a.live).map((a) => barrier(a, { op: 'ping' })));
      if (programFrames() === before) break;
    }
    absorb();
  };

  const deadlines = (): Deadline[] => {
    const all: Deadline[] = [];
    for (const actor of actors) {
      for (const [key, hold] of actor.holds) if (hold.expiresAt !== null) all.push({ at: hold.expiresAt, kind: 'hold', actor, key });
      for (const pending of actor.pending.values()) {
        if (pending.deadline !== null) all.push({ at: pending.deadline, kind: pending.op === 'wait' ? 'wait' : 'acquire', actor, key: pending.key });
      }
    }
    // Holds gained in one step on keys of different shards may be heard in either order on a Redis Cluster:
    // deadlines at one instant go by key, so the program's picks do not depend on that order.
    return all.sort((x, y) => x.at - y.at || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
  };

  const tied = (list: Deadline[]) => list.some((x, i) => list.some((y, j) => j > i && x.key === y.key && Math.abs(x.at - y.at) < TIE));

  /** A duration of a few units whose deadline, if it starts now, ties with no known deadline of `key`. */
  const duration = (key: string): number => {
    let d = 0;
    for (let tries = 0; tries < 8; tries++) {
      d = (1 + Math.floor(next() * 3)) * UNIT + Math.floor(next() * 20) * 50;
      const at = ctx.now() + d;
      if (!deadlines().some((x) => x.key === key && Math.abs(x.at - at) < 2 * TIE)) break;
    }
    return d;
  };

  const label = (actor: Actor, id: string, request: Request) => {
    const { op, key, ...fields } = request;
    const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    return `${actor.name} ${id} ${op}${typeof key === 'string' ? ` ${key.slice(prefix.length)}` : ''}${rest}`;
  };

  /** Sends a request of the program and waits until it has taken effect. */
  const send = async (actor: Actor, request: Request) => {
    const id = `r${++actor.ids}`;
    actor.sent.set(id, request);
    const now = ctx.now();
    if (request.op === 'acquire' && request.acquireTimeout !== 0) {
      const timeout = typeof request.acquireTimeout === 'number' ? now + request.acquireTimeout : null;
      actor.pending.set(id, { op: 'acquire', key: String(request.key), deadline: timeout, queued: false });
    } else if (request.op === 'wait') {
      const timeout = typeof request.timeout === 'number' ? now + request.timeout : null;
      actor.pending.set(id, { op: 'wait', key: String(request.key), deadline: timeout, queued: false });
    }
    steps.push(label(actor, id, request));
    actor.client.send({ ...request, id });
    if (request.op === 'wait') {
      // A wait on a held key is answered later; a read of the same session is answered after the wait took effect.
      await barrier(actor, { op: 'status', key: request.key });
      // A timeout of 0 is due at once: the memory store runs it before the next request, the Redis store when its
      // timer runs, which a manual clock runs only once it moves (docs/scaling.md: a node catches up only the holds
      // that are due before a step). Moving the clock by nothing runs it on both.
      if (request.timeout === 0) ctx.elapse(0);
    } else {
      await actor.client.next((m) => (m.type === 'reply' || m.type === 'queued') && m.id === id, { timeout: WAIT, label: id });
    }
    await settle();
  };

  /** A request of `actor` on `key` (or a cancel); `late`: sent while timers are held back, so no wait with timeout 0. */
  const request = (actor: Actor, key: string, late = false): Request => {
    // In key order, not in the order the grants were heard, which on a Redis Cluster differs across keys.
    const held = [...actor.holds.keys()].sort();
    const op = next();
    if (op < 0.4) {
      const mode = next() < 0.3 ? 'shared' : 'exclusive';
      const t = next();
      const acquireTimeout = t < 0.25 ? 0 : t < 0.6 ? duration(key) : undefined;
      const holdTimeout = next() < 0.45 ? duration(key) : undefined;
      const steal = mode === 'exclusive' && acquireTimeout !== 0 && next() < 0.15;
      return {
        op: 'acquire',
        key,
        ...(mode === 'shared' || next() < 0.3 ? { mode } : {}),
        ...(acquireTimeout === undefined ? {} : { acquireTimeout }),
        ...(holdTimeout === undefined ? {} : { holdTimeout }),
        ...(steal ? { steal } : {}),
        ...(next() < 0.3 ? { meta: { by: actor.name, at: steps.length } } : {}),
      };
    }
    if (op < 0.55) return { op: 'release', key: held.length > 0 && next() < 0.7 ? pick(held) : key };
    if (op < 0.65) {
      let holdTimeout = next() < 0.3 ? null : duration(key);
      const target = held.length > 0 && next() < 0.7 ? pick(held) : key;
      // An extend that would leave the expiry where it was sets it 1 ms later on the Redis store, so that a hold
      // timer knows the expiry it ends by its value (docs/guarantees.md): not asked.
      if (holdTimeout !== null && actor.holds.get(target)?.expiresAt === ctx.now() + holdTimeout) holdTimeout += 50;
      return { op: 'extend', key: target, holdTimeout };
    }
    if (op < 0.75) {
      const pending = [...actor.pending.keys()];
      const target = pending.length > 0 && next() < 0.7 ? pick(pending) : `r${1 + Math.floor(next() * (actor.ids + 1))}`;
      return { op: 'cancel', target };
    }
    if (op < 0.88) {
      const t = next();
      return { op: 'wait', key, ...(t < 0.2 && !late ? { timeout: 0 } : t < 0.6 ? { timeout: duration(key) } : {}) };
    }
    return { op: 'status', key };
  };

  /** Closes (cleanly or by a cut) `actor`'s connection, waits for its session to end, and connects its successor. */
  const end = async (actor: Actor, how: 'close' | 'terminate') => {
    steps.push(`${actor.name} ${how}`);
    const w = watcher.client;
    const from = w.messages.length;
    const ends = [
      ...[...actor.holds].map(([key, hold]) => (m: Frame) => m.key === key && m.token === hold.token && ENDS.has(String(m.event))),
      // A queued acquire leaves the queue, or ends as a hold: a hold of its key whose deadline passed before its timer
      // ran ends first and grants it.
      ...[...actor.pending.values()]
        .filter((p) => p.op === 'acquire' && p.queued)
        .map((p) => (m: Frame) => m.key === p.key && (m.event === 'dequeued' || ENDS.has(String(m.event)))),
    ];
    if (how === 'close') await actor.client.close();
    else actor.client.terminate();
    actor.live = false;
    await Promise.all(
      ends.map((match) =>
        w.next((m) => m.type === 'event' && m.session === actor.client.session && w.indexOf(m) >= from && match(m), {
          timeout: WAIT,
          label: `end of ${actor.name}`,
        }),
      ),
    );
    await settle();
    const successor = await connect(String.fromCharCode(65 + named++));
    actors[actors.indexOf(actor)] = successor;
    steps.push(`${successor.name} connects to node ${successor.node}`);
  };

  /** Moves the clock `ms`, stopping at each known deadline so that the stores see them in order. */
  const elapse = async (ms: number): Promise<boolean> => {
    const target = ctx.now() + ms;
    for (let stops = 0; ; stops++) {
      if (stops === 40) throw new Error(`step ${step}: a deadline did not pass`);
      const due = deadlines().filter((d) => d.at <= target);
      const first = due[0];
      if (!first) break;
      if (tied(due.filter((d) => d.at - first.at < TIE))) return false;
      ctx.elapse(Math.max(0, Math.min(target, first.at + 5) - ctx.now()));
      await settle();
    }
    ctx.elapse(target - ctx.now());
    await settle();
    return true;
  };

  /**
   * Moves the clock `ms` with every timer held back, then has a session of
   * the node of a due hold or request act on its key. A node runs what of
   * its own sessions is due (holds end, acquires and waits time out) before
   * a step of their key, and a key's due deadlines must all be of that node,
   * whose deadline the other node does not act on (docs/scaling.md, How
   * grants travel). Otherwise the clock moves on time.
   */
  const elapseLate = async (ms: number): Promise<boolean> => {
    const due = deadlines().filter((d) => d.at <= ctx.now() + ms);
    const nodeOf = (key: string) => new Set(due.filter((d) => d.key === key).map((d) => d.actor.node));
    if (tied(due) || due.some((d) => nodeOf(d.key).size > 1)) {
      steps.push(`elapse ${ms} (timers on time)`);
      return elapse(ms);
    }
    steps.push(`elapseLate ${ms}`);
    ctx.elapseLate(ms);
    if (due.length === 0) {
      await settle();
      return true;
    }
    const { actor: holder, key } = pick(due);
    const local = actors.filter((a) => a.node === holder.node);
    const actor = next() < 0.6 ? holder : pick(local);
    const touched = [...actor.holds.keys(), ...[...actor.pending.values()].map((p) => p.key)];
    const r = next();
    if (r < 0.2 && touched.every((k) => nodeOf(k).size <= 1 && [...nodeOf(k)].every((n) => n === actor.node))) {
      await end(actor, next() < 0.5 ? 'close' : 'terminate');
    } else {
      await send(actor, request(actor, key, true));
    }
    return true;
  };

  await settle();
  for (step = 1; step <= STEPS; step++) {
    const r = next();
    let onTime = true;
    if (r < 0.12) {
      const ms = pick([300, 700, 1000, 1500, 2000, 3000]);
      steps.push(`elapse ${ms}`);
      onTime = await elapse(ms);
    } else if (r < 0.2) {
      onTime = await elapseLate(pick([700, 1000, 1500, 2000, 3000]));
    } else if (r < 0.25) {
      await end(pick(actors), next() < 0.5 ? 'close' : 'terminate');
    } else {
      const actor = pick(actors);
      await send(actor, request(actor, pick(keys)));
    }
    if (!onTime) {
      // Two deadlines of one key at one instant: either order is right, and the program ends here.
      steps.push('tie');
      break;
    }
  }

  const list = await watcher.client.request({ op: 'list', id: 'bfinal', prefix, limit: 100 }, { timeout: WAIT });
  absorb();
  for (const actor of everyone) actor.client.terminate();

  return normalise({ seen, steps, list, names, prefix, start });
}

interface Raw {
  seen: Seen[];
  steps: string[];
  list: Frame;
  names: Map<string, string>;
  prefix: string;
  start: number;
}

/**
 * Session ids become client names, keys lose the run's prefix, tokens become
 * their rank among the key's tokens, times become offsets from the run's
 * start, and `at`, `since` and `seq` are dropped. Tokens and `seq` rise per
 * key on Redis and across keys on memory (docs/protocol.md, Clarifications:
 * where tokens come from, `seq` of a queued request); only their order
 * within a key is the same.
 */
function normalise({ seen, steps, list, names, prefix, start }: Raw): Outcome {
  const tokens = new Map<string, Set<number>>();
  const note = (key: unknown, token: unknown) => {
    if (typeof token !== 'number') return;
    const k = String(key);
    let set = tokens.get(k);
    if (!set) tokens.set(k, (set = new Set()));
    set.add(token);
  };
  const statuses = (frame: Frame): Array<Record<string, unknown>> =>
    frame.type !== 'reply' ? [] : Array.isArray(frame.locks) ? (frame.locks as Array<Record<string, unknown>>) : Array.isArray(frame.holders) ? [frame] : [];
  for (const { actor, frame } of [...seen, { actor: undefined, frame: list }]) {
    if (frame.type === 'event' || frame.type === 'lost') note(frame.key, frame.token);
    if (frame.type === 'reply' && actor) {
      const request = actor.sent.get(String(frame.id));
      if (request?.op === 'acquire') note(request.key, frame.token);
    }
    for (const s of statuses(frame)) for (const h of s.holders as Array<{ token: unknown }>) note(s.key, h.token);
  }
  const rank = (key: unknown, token: unknown) => {
    const sorted = [...(tokens.get(String(key)) ?? [])].sort((a, b) => a - b);
    return `#${sorted.indexOf(Number(token)) + 1}`;
  };
  const who = (session: unknown) => names.get(String(session)) ?? '?';
  const key = (k: unknown) => String(k).slice(prefix.length);
  const time = (t: unknown) => (typeof t === 'number' ? `t+${t - start}` : String(t));
  const status = (s: Record<string, unknown>) => ({
    key: key(s.key),
    locked: s.locked,
    mode: s.mode,
    holders: (s.holders as Array<Record<string, unknown>>).map(
      (h) => `${who(h.session)} ${String(h.mode)} ${rank(s.key, h.token)} ${time(h.expiresAt)} ${JSON.stringify(h.meta)}`,
    ),
    queue: (s.queue as Array<Record<string, unknown>>).map((q) => `${who(q.session)} ${String(q.mode)} ${JSON.stringify(q.meta)}`),
    heldByYou: s.heldByYou,
  });

  const outcome: Outcome = { steps, replies: {}, lost: {}, events: {}, table: list.ok ? (list.locks as Array<Record<string, unknown>>).map(status) : list };
  const add = (map: Record<string, string[]>, at: string, line: string) => (map[at] ??= []).push(line);
  for (const { step, actor, frame } of seen) {
    if (frame.type === 'event') {
      const token = frame.token === undefined ? '' : ` ${rank(frame.key, frame.token)}`;
      add(
        outcome.events,
        key(frame.key),
        `@${step} ${String(frame.event)} ${who(frame.session)}${token} ${String(frame.mode)} ${JSON.stringify(frame.meta)} h${String(frame.holders)} w${String(frame.waiters)}`,
      );
    } else if (frame.type === 'lost') {
      add(outcome.lost, `${actor.name} ${key(frame.key)}`, `@${step} ${rank(frame.key, frame.token)} ${String(frame.reason)}`);
    } else if (frame.type === 'queued' || frame.type === 'reply') {
      const id = String(frame.id);
      const request = actor.sent.get(id);
      const name = `${actor.name} ${id} ${request?.op ?? '?'}`;
      let line: string;
      if (frame.type === 'queued') line = `queued ${String(frame.position)}`;
      else if (frame.ok !== true) line = `error ${(frame.error as { code: string }).code}`;
      else if (request?.op === 'status') line = JSON.stringify(status(frame));
      else {
        const { type: _type, id: _id, ok: _ok, token, expiresAt, ...rest } = frame;
        line = JSON.stringify({
          ...rest,
          ...(token === undefined ? {} : { token: rank(request?.key, token) }),
          ...(expiresAt === undefined ? {} : { expiresAt: time(expiresAt) }),
        });
      }
      add(outcome.replies, name, `@${step} ${line}`);
    } else {
      add(outcome.replies, `${actor.name} unexpected`, `@${step} ${JSON.stringify(frame)}`);
    }
  }
  return outcome;
}

/**
 * Runs seeds 1 to `seeds` of the programs of `runSessions` on `target` and
 * on the memory store: each must answer every request, tell every loss,
 * show every key's events and leave the table as the memory store does.
 */
export function describeSessionsAlike(target: ConformanceTarget, seeds: number): void {
  describe(`sessions on two nodes contending for a few keys, on ${target.name} and the memory store`, () => {
    const limits = { maxLocksPerSession: 2, maxWaitersPerKey: 2 };
    const memory = useConformance(memoryTarget, { limits });
    const other = useConformance(target, { limits });

    it(`answer, lose, show events and leave the table alike, for each of ${seeds} seeded programs`, { timeout: 120_000 }, async () => {
      for (let seed = 1; seed <= seeds; seed++) {
        const expected = await runSessions(memory(), seed);
        expect({ seed, ...(await runSessions(other(), seed)) }).toEqual({ seed, ...expected });
      }
    });
  });
}
