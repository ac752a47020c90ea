import { decodeClientMessage, type ClientMessage } from '@lockwire/protocol';
import { createLockServer, createManualClock, createMemoryStore, type LockServer } from '@lockwire/server';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, sessionLog, within, type Frame } from '../../server/test/server-harness.js';

/**
 * Random and mutated frames against a live server, one fresh session per
 * run. A model of that session's locks predicts every answer: frames the
 * protocol decoder refuses must get `bad_request`; valid ones the answer the
 * lock table gives. After each run the table must equal the model, and a
 * fresh client must still be able to lock.
 */

const FUZZ_MS = 9000;

const KEYS = ['', 'a', 'doc:1', 'doc:2', '__proto__', 'constructor', 'toString', '\ud800', '\ufffd', '😀', 'a\u0000b', 'k'.repeat(256), 'k'.repeat(257)];
const OPS = ['acquire', 'release', 'extend', 'wait', 'cancel', 'status', 'list', 'watch', 'unwatch', 'revoke', 'ping', 'nope', '__proto__'];

const key = fc.oneof(fc.constantFrom(...KEYS), fc.string({ unit: 'binary', maxLength: 6 }));
const duration = fc.oneof(
  fc.constant(null),
  fc.integer({ min: 0, max: 2_147_483_647 }),
  fc.constantFrom(-1, 2_147_483_648, 1e308, 0.5, Number.MAX_SAFE_INTEGER, '5', true),
);
const id = fc.oneof(
  fc.nat({ max: 30 }),
  fc.string({ maxLength: 70 }),
  fc.constantFrom(-1, 1.5, 2 ** 53, null, true, [], {}, ''),
);
const meta = fc.oneof(
  fc.constant(null),
  fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'user', 'n'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 3 }),
  fc.constantFrom([], 'text', 5),
);
const request = fc.record(
  {
    op: fc.constantFrom(...OPS),
    id,
    key,
    prefix: key,
    mode: fc.constantFrom('exclusive', 'shared', 'EXCLUSIVE'),
    acquireTimeout: duration,
    holdTimeout: duration,
    timeout: duration,
    steal: fc.oneof(fc.boolean(), fc.constant('yes')),
    meta,
    target: id,
    limit: fc.oneof(fc.integer({ min: 1, max: 10_000 }), fc.constantFrom(0, 10_001, 2.5)),
    extra: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: [] },
);

/** Requests biased to be valid, so the lock table changes often. */
const valid = fc.oneof(
  fc.record({ op: fc.constant('acquire'), id: fc.nat({ max: 30 }), key: fc.constantFrom(...KEYS.slice(0, 11)), mode: fc.constantFrom('exclusive', 'shared'), acquireTimeout: fc.constantFrom(0, null, 100), steal: fc.boolean() }, { requiredKeys: ['op', 'id', 'key'] }),
  fc.record({ op: fc.constantFrom('release', 'extend', 'status', 'revoke', 'wait'), id: fc.nat({ max: 30 }), key: fc.constantFrom(...KEYS.slice(0, 11)), holdTimeout: fc.constant(1000) }, { requiredKeys: ['op', 'id', 'key'] }),
  fc.record({ op: fc.constantFrom('list', 'watch', 'unwatch'), id: fc.nat({ max: 30 }), prefix: fc.constantFrom('', 'doc', 'a') }),
  fc.record({ op: fc.constantFrom('ping', 'cancel'), id: fc.nat({ max: 30 }), target: fc.nat({ max: 30 }) }),
);

type Wire = { kind: 'text'; text: string } | { kind: 'binary' } | { kind: 'oversize' };

const deep = (depth: number, open: string, close: string, inner: string) => open.repeat(depth) + inner + close.repeat(depth);
const text = fc.oneof(
  { weight: 6, arbitrary: valid.map((value) => JSON.stringify(value)) },
  { weight: 4, arbitrary: request.map((value) => JSON.stringify(value)) },
  {
    weight: 2,
    arbitrary: fc.tuple(valid, fc.nat(), fc.string({ unit: 'binary', maxLength: 3 })).map(([value, at, insert]) => {
      const json = JSON.stringify(value);
      const i = at % (json.length + 1);
      return json.slice(0, i) + insert + json.slice(i + 1);
    }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"op":"ping","id":1e999}',
      '{"op":"ping","id":123456789012345678901234567890}',
      '{"op":"acquire","id":1,"key":"k","holdTimeout":1e999}',
      '{"op":"ping","id":1,"__proto__":{"op":"revoke"}}',
      '{"__proto__":{"op":"ping","id":1}}',
      '{"op":"ping","id":1,"op":"revoke"}',
      '{"op":"acquire","id":2,"key":"k","meta":' + deep(3000, '{"a":', '}', '1') + '}',
      '{"op":"acquire","id":3,"key":"k","meta":{"a":' + deep(5000, '[', ']', '') + '}}',
      deep(8000, '[', ']', ''),
      '"\\ud800"',
      'null',
      '',
      '{"op":"acquire","id":4,"key":"\\ud800\\udc00\\u0000"}',
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
);
const wire: fc.Arbitrary<Wire> = fc.oneof(
  { weight: 40, arbitrary: text.map((t): Wire => ({ kind: 'text', text: t })) },
  { weight: 1, arbitrary: fc.constant<Wire>({ kind: 'binary' }) },
  { weight: 1, arbitrary: fc.constant<Wire>({ kind: 'oversize' }) },
);

interface Model {
  held: Map<string, { mode: string; token: number }>;
  watches: Set<string>;
  lastToken: number;
}

/** The reply the model expects for a valid message, applied to the model once it checks out. */
function predict(model: Model, message: ClientMessage, reply: Frame, lost: Frame[]): void {
  const fail = (code: string) => expect(reply).toMatchObject({ ok: false, error: { code } });
  switch (message.op) {
    case 'acquire': {
      const mode = message.mode ?? 'exclusive';
      if (message.steal && (mode === 'shared' || message.acquireTimeout === 0)) return fail('bad_request');
      const mine = model.held.get(message.key);
      if (mine && mine.mode !== mode) return fail('bad_request');
      if (mine) return void expect(reply).toMatchObject({ ok: true, acquired: true, token: mine.token });
      expect(reply).toMatchObject({ ok: true, acquired: true });
      expect(reply.token).toBeGreaterThan(model.lastToken);
      model.lastToken = reply.token as number;
      model.held.set(message.key, { mode, token: model.lastToken });
      return;
    }
    case 'release':
    case 'extend':
      if (!model.held.has(message.key)) return fail('not_holder');
      expect(reply).toMatchObject({ ok: true });
      if (message.op === 'release') model.held.delete(message.key);
      return;
    case 'wait':
      return void expect(reply).toMatchObject({ ok: true, free: true });
    case 'cancel':
      return void expect(reply).toMatchObject({ ok: true, cancelled: false });
    case 'status':
      return void expect(reply).toMatchObject({ ok: true, locked: model.held.has(message.key), heldByYou: model.held.has(message.key) });
    case 'list': {
      const prefix = message.prefix ?? '';
      const keys = [...model.held.keys()].filter((k) => k.startsWith(prefix)).sort();
      return void expect((reply.locks as Array<{ key: string }>).map((lock) => lock.key)).toEqual(keys.slice(0, message.limit ?? 1000));
    }
    case 'watch': {
      const prefix = message.prefix ?? '';
      if (!model.watches.has(prefix) && model.watches.size >= 100) return fail('bad_request');
      model.watches.add(prefix);
      return void expect(reply).toMatchObject({ ok: true });
    }
    case 'unwatch':
      model.watches.delete(message.prefix ?? '');
      return void expect(reply).toMatchObject({ ok: true });
    case 'revoke': {
      const mine = model.held.get(message.key);
      expect(reply).toMatchObject({ ok: true, revoked: mine ? 1 : 0 });
      if (mine) expect(lost).toEqual([{ type: 'lost', key: message.key, token: mine.token, reason: 'revoked' }]);
      model.held.delete(message.key);
      return;
    }
    case 'ping':
      return void expect(reply).toMatchObject({ ok: true, at: expect.any(Number) });
  }
}

describe('protocol fuzz', () => {
  let server: LockServer;
  const clock = createManualClock(Date.now());
  const sessions = sessionLog();

  beforeAll(async () => {
    server = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      clock,
      store: createMemoryStore({ clock }),
      // The clock never moves, so the rate limiter would never refill.
      limits: { rateBurst: 10_000_000, maxPayload: 64 * 1024 },
      logger: sessions.logger,
    });
  });
  afterAll(async () => {
    await server.close();
  });

  it('answers every frame as the protocol says and keeps the lock table equal to a model of the valid frames', async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(wire, { minLength: 1, maxLength: 60 }), async (frames) => {
        runs++;
        const { client, welcome } = await RawClient.connect(server.url);
        const model: Model = { held: new Map(), watches: new Set(), lastToken: 0 };
        try {
          for (const frame of frames) {
            if (frame.kind === 'oversize') {
              client.ws.send(JSON.stringify({ op: 'ping', id: 1, pad: 'x'.repeat(70 * 1024) }));
              expect(await within(client.closed, 'the 1009 close')).toMatchObject({ code: 1009 });
              model.held.clear();
              break;
            }
            let expected: ClientMessage | { bad: string | number | null } = { bad: null };
            if (frame.kind === 'binary') client.ws.send(Buffer.from('{"op":"ping","id":1}'), { binary: true });
            else {
              // A text frame carries UTF-8, so a lone surrogate arrives as U+FFFD: the model reads what the server reads.
              const decoded = decodeClientMessage(Buffer.from(frame.text, 'utf8').toString('utf8'));
              if (decoded.ok) {
                // A wait on a key this session holds would stay pending: the model answers frames one by one.
                if (decoded.message.op === 'wait' && model.held.has(decoded.message.key)) continue;
                expected = decoded.message;
              } else {
                expect(decoded.error.code).toBe('bad_request');
                expected = { bad: decoded.id };
              }
              client.ws.send(frame.text);
            }
            const lost: Frame[] = [];
            let reply: Frame;
            for (;;) {
              const next = await client.next((f) => f.type === 'reply' || f.type === 'lost', 'a reply');
              if (next.type === 'reply') {
                reply = next;
                break;
              }
              lost.push(next);
            }
            if ('bad' in expected) {
              expect(reply).toMatchObject({ ok: false, id: expected.bad, error: { code: 'bad_request' } });
              expect(lost).toEqual([]);
            } else {
              expect(reply.id).toBe(expected.id);
              predict(model, expected, reply, lost);
              if (expected.op !== 'revoke') expect(lost).toEqual([]);
            }
          }
          const { client: observer } = await RawClient.connect(server.url);
          const table = await observer.request({ op: 'list', id: 1, limit: 10_000 });
          const ours = (table.locks as Array<{ key: string; holders: Array<{ session: string; token: number }> }>).filter(
            (lock) => lock.holders.some((holder) => holder.session === welcome.session),
          );
          expect(ours.map((lock) => [lock.key, lock.holders[0]?.token])).toEqual(
            [...model.held].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, hold]) => [k, hold.token]),
          );
          expect(table.locks).toHaveLength(ours.length);
          expect(await observer.request({ op: 'acquire', id: 2, key: `fresh-${runs}`, acquireTimeout: 0 })).toMatchObject({ acquired: true });
          await observer.request({ op: 'release', id: 3, key: `fresh-${runs}` });
          await observer.close();
        } finally {
          client.ws.terminate();
          await within(client.closed, 'the fuzz session to close');
          // A terminated socket's close reaches the server within a few
          // event-loop turns; on a loaded machine that can pass 3 s.
          await sessions.idle('the sessions to end', 15_000);
          expect(server.sessionCount()).toBe(0);
        }
      }),
      { numRuns: 100_000, interruptAfterTimeLimit: FUZZ_MS, markInterruptAsFailure: false },
    );
    expect(runs).toBeGreaterThan(5);
    const health = await fetch(`${server.httpUrl}/healthz`);
    expect(health.status).toBe(200);
  }, FUZZ_MS * 4);
});
