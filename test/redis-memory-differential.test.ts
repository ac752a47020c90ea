import { describe, expect, it } from 'vitest';
import type { Conformance } from './helpers/conformance-context.js';
import { hold, useConformance } from './helpers/conformance-context.js';
import { pickWith, random } from './helpers/differential.js';
import { memoryTarget } from './helpers/memory-target.js';
import type { Frame } from './helpers/raw-client.js';
import { useRedisTarget } from './helpers/redis-target.js';

// Seeded programs of requests one session sends back to back (acquires, some
// try-once or stealing, releases, extends and cancels on a few keys, one of
// them held by another session), at a lock limit of 2: the Redis store must
// answer each and leave the table exactly as the memory store does, whose
// requests of a session apply one after the other in arrival order.

const redisNodes = useRedisTarget(2);

type Request = Record<string, unknown> & { id: string };

interface Program {
  /** Keys the session holds before it sends the requests. */
  readonly held: string[];
  readonly requests: Request[];
}

/** The program of `seed`; its keys start with `prefix`, and `prefix + 'busy'` is another session's. */
function program(seed: number, prefix: string): Program {
  const next = random(seed);
  const keys = ['k1', 'k2', 'busy'].map((k) => prefix + k);
  const pick = <T>(list: readonly T[]): T => pickWith(next, list);
  const held = keys.slice(0, 2).filter(() => next() < 0.6);
  const requests: Request[] = [];
  const acquires: string[] = [];
  const count = 4 + Math.floor(next() * 6);
  let key = pick(keys);
  for (let i = 0; i < count; i++) {
    const id = `r${i}`;
    const op = next();
    // Half the requests are on the key of the one before: a session's requests of one key must apply in order.
    if (next() < 0.5) key = pick(keys);
    if (op < 0.45) {
      const variant = next();
      requests.push({ op: 'acquire', id, key, ...(variant < 0.3 ? { acquireTimeout: 0 } : variant < 0.6 ? { steal: true } : {}) });
      acquires.push(id);
    } else if (op < 0.75) {
      requests.push({ op: 'release', id, key });
    } else if (op < 0.92 && acquires.length > 0) {
      // Half the cancels are of the acquire just before.
      const latest = acquires.at(-1);
      requests.push({ op: 'cancel', id, target: latest !== undefined && next() < 0.5 ? latest : pick(acquires) });
    } else {
      requests.push({ op: 'extend', id, key, holdTimeout: null });
    }
  }
  return { held, requests };
}

/** A reply or queued frame without what differs between runs (tokens, times). */
function summary(frame: Frame): string {
  if (frame.type === 'queued') return 'queued';
  if (frame.ok === false) return `error ${(frame.error as { code: string }).code}`;
  const { type: _type, id: _id, ok: _ok, token: _token, expiresAt: _expiresAt, ...rest } = frame;
  return JSON.stringify(rest);
}

/** Runs seed `seed`'s program on `ctx` under fresh keys; returns each answer, then the table of those keys. */
async function run(ctx: Conformance, seed: number): Promise<string[]> {
  const prefix = `s${seed}/`;
  const { held, requests } = program(seed, prefix);
  const a = await ctx.connect();
  const b = await ctx.connect();
  await hold(b, `${prefix}busy`);
  for (const key of held) await hold(a, key);
  for (const request of requests) a.send(request);
  const answers: string[] = [];
  for (const request of requests) {
    const frame = await a.next((m) => (m.type === 'reply' || m.type === 'queued') && m.id === request.id, { timeout: 3000, label: request.id });
    answers.push(`${request.op} ${String(request.key ?? request.target)} -> ${summary(frame)}`);
  }
  const list = await a.request({ op: 'list', prefix, limit: 100 });
  const who = (entry: { session: string }) => (entry.session === a.session ? 'a' : 'b');
  const locks = list.locks as Array<{ key: string; holders: Array<{ session: string }>; queue: Array<{ session: string }> }>;
  answers.push(JSON.stringify(locks.map((lock) => [lock.key, lock.holders.map(who), lock.queue.map(who)])));
  a.terminate();
  b.terminate();
  return answers;
}

const SEEDS = 100;

describe('requests a session sends back to back, on the Redis store and the memory store', () => {
  const limits = { maxLocksPerSession: 2, maxWaitersPerKey: 10 };
  const memory = useConformance(memoryTarget, { limits });
  const onRedis = useConformance(redisNodes, { limits });

  it(`are answered alike and leave the same table, for each of ${SEEDS} seeded programs`, async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const expected = await run(memory(), seed);
      expect({ seed, answers: await run(onRedis(), seed) }).toEqual({ seed, answers: expected });
    }
  });
});
