import { LockClient, type Lease } from '@lockwire/client';
import { afterEach, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { LockStore } from '../src/store.js';
import { resumeQuery } from './grace-scenarios.js';
import { RawClient, within } from './server-harness.js';

const GRACE = 5000;

/** The `lockwire_locks_held` gauge of `server` now. */
async function heldGauge(server: LockServer): Promise<number> {
  const name = `lockwire_locks_held{store="${server.store.kind}"}`;
  const line = (await server.metrics.scrape()).split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no sample ${name}`);
  return Number(line.slice(name.length + 1));
}

/** Waits (bounded) until the gauge reads `expected`: on the Redis store a loss reaches the node a little after the step. */
async function gaugeReaches(server: LockServer, expected: number, what: string): Promise<void> {
  await within(
    (async () => {
      while ((await heldGauge(server)) !== expected) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    what,
  );
}

type StoreMethod = 'acquire' | 'release';

/**
 * Wraps a store to see its calls: `holdNext(method)` holds the answer of the
 * next call of `method` back after the store gave it (as a slow round trip
 * would) until `open()`; `idle()` resolves once no call is in flight, so
 * whatever the server does with the answers has been done.
 */
function watchedStore() {
  let inFlight = 0;
  const held = new Map<StoreMethod, { answered: () => void; opened: Promise<void> }>();
  const wrap = (inner: LockStore): LockStore =>
    new Proxy(inner, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]): unknown => {
          const result: unknown = Reflect.apply(value, target, args);
          if (!(result instanceof Promise)) return result;
          const gate = property === 'acquire' || property === 'release' ? held.get(property) : undefined;
          if (gate) held.delete(property as StoreMethod);
          inFlight++;
          return (async () => {
            try {
              const answer: unknown = await result;
              if (gate) {
                gate.answered();
                await gate.opened;
              }
              return answer;
            } finally {
              inFlight--;
            }
          })();
        };
      },
    });
  const holdNext = (method: StoreMethod) => {
    let answered: () => void = () => undefined;
    let open: () => void = () => undefined;
    const wasAnswered = new Promise<void>((resolve) => (answered = resolve));
    held.set(method, { answered, opened: new Promise<void>((resolve) => (open = resolve)) });
    return { answered: within(wasAnswered, `the store to answer the ${method}`), open };
  };
  const idle = () =>
    within(
      (async () => {
        do await new Promise((resolve) => setTimeout(resolve, 5));
        while (inFlight > 0);
      })(),
      'the store calls in flight to be answered',
    );
  return { wrap, holdNext, idle };
}

/**
 * What a session in grace still holds, run against one store: each lock it
 * lost without a connection is reported with its real reason after the
 * resumed welcome, and stops counting as held at its loss; a lock its last
 * requests ended or never took is not counted either.
 */
export function describeGraceLosses(name: string, makeStore: (clock: ManualClock) => Promise<LockStore>): void {
  describe(`locks held and lost during session grace (${name})`, () => {
    const servers: LockServer[] = [];
    const clients: RawClient[] = [];
    const lockClients: LockClient[] = [];
    const proxies: TcpProxy[] = [];

    afterEach(async () => {
      for (const client of clients.splice(0)) client.ws.terminate();
      await Promise.all(lockClients.splice(0).map((client) => client.close()));
      await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
      await Promise.all(servers.splice(0).map((server) => server.close()));
    });

    async function start(wrap: (store: LockStore) => LockStore = (store) => store) {
      const clock = createManualClock(Date.now());
      const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, store: wrap(await makeStore(clock)), sessionGrace: GRACE });
      servers.push(server);
      const connect = async (query = '') => {
        const connection = await RawClient.connect(`${server.url}${query}`);
        clients.push(connection.client);
        return connection;
      };
      /** Drops `client`'s connection without a close frame and waits until the server has put its session in grace. */
      const drop = async (client: RawClient) => {
        const open = server.sessionCount();
        client.ws.terminate();
        await within(
          (async () => {
            while (server.sessionCount() !== open - 1) await new Promise((resolve) => setTimeout(resolve, 5));
          })(),
          'the server to see the drop',
        );
      };
      /** Every `lost` the resumed connection got before the reply to a ping (a barrier for `lost`), by key. */
      const lostBeforePong = async (client: RawClient) => {
        await client.request({ op: 'ping', id: 'barrier' });
        return client.inbox.filter((frame) => frame.type === 'lost').sort((a, b) => String(a.key).localeCompare(String(b.key)));
      };
      return { server, clock, connect, resumeQuery, drop, lostBeforePong };
    }

    /** The reason `lease`'s signal aborted with, once it has (bounded). */
    const abortReason = (lease: Lease): Promise<unknown> =>
      within(
        new Promise((resolve) => {
          if (lease.signal.aborted) resolve(lease.signal.reason);
          else lease.signal.addEventListener('abort', () => resolve(lease.signal.reason), { once: true });
        }),
        `the loss of ${lease.key}`,
      );

    it('sends, after the resumed welcome, a lost with its real reason for each lock expired, stolen or revoked during the grace', async () => {
      const { server, clock, connect, resumeQuery, drop, lostBeforePong } = await start();
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      const expired = await a.request({ op: 'acquire', id: 1, key: 'expired', holdTimeout: 1000 });
      const stolen = await a.request({ op: 'acquire', id: 2, key: 'stolen' });
      const revoked = await a.request({ op: 'acquire', id: 3, key: 'revoked' });
      const kept = await a.request({ op: 'acquire', id: 4, key: 'kept' });
      await drop(a);
      expect(await heldGauge(server)).toBe(4);

      clock.advance(1000);
      await gaugeReaches(server, 3, 'the expiry to count');
      expect(await b.request({ op: 'acquire', id: 1, key: 'stolen', steal: true })).toMatchObject({ acquired: true });
      expect(await b.request({ op: 'revoke', id: 2, key: 'revoked' })).toMatchObject({ revoked: 1 });
      // The session in grace holds kept alone; b holds stolen.
      await gaugeReaches(server, 2, 'the steal and the revoke to count');

      const { client: again, welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({
        session: welcome.session,
        resumed: true,
        held: [{ key: 'kept', token: kept.token }],
      });
      expect(resumed.held).toHaveLength(1);
      expect(await lostBeforePong(again)).toEqual([
        { type: 'lost', key: 'expired', token: expired.token, reason: 'expired' },
        { type: 'lost', key: 'revoked', token: revoked.token, reason: 'revoked' },
        { type: 'lost', key: 'stolen', token: stolen.token, reason: 'stolen' },
      ]);
      expect(await heldGauge(server)).toBe(2);
    });

    it('sends no lost for a lock still held across the grace, and it stays held', async () => {
      const { server, clock, connect, resumeQuery, drop, lostBeforePong } = await start();
      const { client: a, welcome } = await connect();
      const grant = await a.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: GRACE * 2 });
      await drop(a);
      clock.advance(GRACE - 1);
      const { client: again, welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [{ key: 'k', token: grant.token }] });
      expect(await lostBeforePong(again)).toEqual([]);
      expect(await heldGauge(server)).toBe(1);
      // Past the old grace the lock is still this session's.
      clock.advance(1);
      expect(await again.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({ heldByYou: true });
      expect(await again.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ released: true });
    });

    it('drops the held gauge at a loss during the grace, not when the grace ends', async () => {
      const { server, clock, connect, drop } = await start();
      const { client: a } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'short', holdTimeout: 1000 });
      await a.request({ op: 'acquire', id: 2, key: 'long' });
      await drop(a);
      expect(await heldGauge(server)).toBe(2);
      clock.advance(1000);
      await gaugeReaches(server, 1, 'the expired lock to stop counting');
      clock.advance(GRACE - 1000);
      await gaugeReaches(server, 0, 'the grace to end');
    });

    it('stops counting a lock as held once the release in flight when the connection dropped is answered', async () => {
      const store = watchedStore();
      const { server, clock, connect, resumeQuery, drop } = await start(store.wrap);
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      const release = store.holdNext('release');
      a.send({ op: 'release', id: 2, key: 'k' });
      await release.answered;
      await drop(a);
      release.open();
      await store.idle();
      expect(await b.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({ holders: [] });
      expect(await heldGauge(server)).toBe(0);
      const { welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [] });
      expect(await heldGauge(server)).toBe(0);
      clock.advance(GRACE);
      expect(await heldGauge(server)).toBe(0);
    });

    it('does not count as held again a lock stolen while the holder\'s re-acquire of it was answering (the store ran the re-acquire first)', async () => {
      const store = watchedStore();
      const { server, connect } = await start(store.wrap);
      const { client: a } = await connect();
      const { client: b } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      // The store runs a's re-acquire (it holds k: acquired, same token); its answer is slow to come back.
      const acquire = store.holdNext('acquire');
      a.send({ op: 'acquire', id: 2, key: 'k' });
      await acquire.answered;
      expect(await b.request({ op: 'acquire', id: 1, key: 'k', steal: true })).toMatchObject({ acquired: true });
      expect(await a.next((f) => f.type === 'lost', 'a lost')).toMatchObject({ key: 'k', reason: 'stolen' });
      acquire.open();
      await a.reply(2);
      await store.idle();
      expect(await b.request({ op: 'status', id: 2, key: 'k' })).toMatchObject({ holders: [{}] });
      expect(await heldGauge(server)).toBe(1);
      // a holds nothing: its release is refused, b keeps k.
      expect(await a.request({ op: 'release', id: 3, key: 'k' })).toMatchObject({ ok: false, error: { code: 'not_holder' } });
    });

    it('does not count as held a queued acquire\'s grant that came before its call was answered and was stolen meanwhile', async () => {
      const store = watchedStore();
      const { server, connect } = await start(store.wrap);
      const { client: h } = await connect();
      const { client: a } = await connect();
      const { client: b } = await connect();
      expect(await h.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
      // The store queues a's acquire; its answer is slow to come back.
      const acquire = store.holdNext('acquire');
      a.send({ op: 'acquire', id: 1, key: 'k' });
      await acquire.answered;
      // h's release grants a's ticket (settled before the call answered), then b steals k.
      expect(await h.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ released: true });
      expect(await b.request({ op: 'acquire', id: 1, key: 'k', steal: true })).toMatchObject({ acquired: true });
      const lost = await a.next((f) => f.type === 'lost', 'a lost');
      acquire.open();
      expect(await a.reply(1)).toMatchObject({ acquired: true, token: lost.token });
      await store.idle();
      expect(await heldGauge(server)).toBe(1);
      expect(await a.request({ op: 'release', id: 2, key: 'k' })).toMatchObject({ ok: false, error: { code: 'not_holder' } });
    });

    it('keeps a lock re-acquired while the release before it was still answering, counted and reported in the resumed welcome', async () => {
      const store = watchedStore();
      const { server, connect, resumeQuery, drop } = await start(store.wrap);
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      const release = store.holdNext('release');
      a.send({ op: 'release', id: 2, key: 'k' });
      await release.answered;
      // The store released k; the same session takes it again and is told so before the release's answer.
      expect(await a.request({ op: 'acquire', id: 3, key: 'k' })).toMatchObject({ acquired: true });
      await drop(a);
      release.open();
      await store.idle();
      expect(await b.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({ holders: [{ session: welcome.session }] });
      expect(await heldGauge(server)).toBe(1);
      const { welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [{ key: 'k' }] });
      expect(await heldGauge(server)).toBe(1);
    });

    it('reports in the resumed welcome a lock re-acquired before the release before it was answered, all before the drop', async () => {
      const store = watchedStore();
      const { server, connect, resumeQuery, drop } = await start(store.wrap);
      const { client: a, welcome } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      const release = store.holdNext('release');
      a.send({ op: 'release', id: 2, key: 'k' });
      await release.answered;
      expect(await a.request({ op: 'acquire', id: 3, key: 'k' })).toMatchObject({ acquired: true });
      release.open();
      expect(await a.reply(2)).toMatchObject({ ok: true, released: true });
      await store.idle();
      await drop(a);
      expect(await heldGauge(server)).toBe(1);
      const { welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [{ key: 'k' }] });
    });

    it('still counts a lock re-acquired while the release before it was answering, and ends it with the session', async () => {
      const store = watchedStore();
      const { server, connect } = await start(store.wrap);
      const { client: a } = await connect();
      const { client: b } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      const release = store.holdNext('release');
      a.send({ op: 'release', id: 2, key: 'k' });
      await release.answered;
      expect(await a.request({ op: 'acquire', id: 3, key: 'k' })).toMatchObject({ acquired: true });
      release.open();
      expect(await a.reply(2)).toMatchObject({ ok: true, released: true });
      expect(await heldGauge(server)).toBe(1);
      b.send({ op: 'acquire', id: 1, key: 'k' });
      expect(await b.next((f) => f.type === 'queued', 'b queued')).toMatchObject({ key: 'k' });
      // A closed session ends its hold (no grace after a close frame): b is granted.
      a.ws.close(1000);
      expect(await b.reply(1)).toMatchObject({ ok: true, acquired: true });
      expect(await heldGauge(server)).toBe(1);
    });

    it('stops counting a lock released while a re-acquire by its holder sent before the release was still answering', async () => {
      const store = watchedStore();
      const { server, connect } = await start(store.wrap);
      const { client: a } = await connect();
      await a.request({ op: 'acquire', id: 1, key: 'k' });
      const acquire = store.holdNext('acquire');
      a.send({ op: 'acquire', id: 2, key: 'k' });
      await acquire.answered;
      expect(await a.request({ op: 'release', id: 3, key: 'k' })).toMatchObject({ ok: true, released: true });
      acquire.open();
      expect(await a.reply(2)).toMatchObject({ ok: true, acquired: true });
      await store.idle();
      expect(await heldGauge(server)).toBe(0);
      expect(await a.request({ op: 'status', id: 4, key: 'k' })).toMatchObject({ locked: false });
    });

    it('does not count as held the key of an acquire answered not granted after the connection dropped', async () => {
      const store = watchedStore();
      const { server, connect, drop } = await start(store.wrap);
      const { client: a } = await connect();
      const { client: b } = await connect();
      await b.request({ op: 'acquire', id: 1, key: 'k' });
      const acquire = store.holdNext('acquire');
      a.send({ op: 'acquire', id: 1, key: 'k', acquireTimeout: 0 });
      await acquire.answered;
      await drop(a);
      acquire.open();
      await store.idle();
      // b's lock alone: the session in grace never got k.
      expect(await heldGauge(server)).toBe(1);
    });

    it('counts as held the key of an acquire granted after the connection dropped', async () => {
      const store = watchedStore();
      const { server, connect, resumeQuery, drop } = await start(store.wrap);
      const { client: a, welcome } = await connect();
      const acquire = store.holdNext('acquire');
      a.send({ op: 'acquire', id: 1, key: 'k' });
      await acquire.answered;
      await drop(a);
      acquire.open();
      await store.idle();
      expect(await heldGauge(server)).toBe(1);
      const { welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [{ key: 'k' }] });
    });

    it('keeps the losses of a session whose resume failed for the next resume', async () => {
      const { connect, resumeQuery, drop, lostBeforePong, server } = await start();
      const { client: a, welcome } = await connect();
      const { client: b } = await connect();
      const grant = await a.request({ op: 'acquire', id: 1, key: 'k' });
      await drop(a);
      expect(await b.request({ op: 'revoke', id: 1, key: 'k' })).toMatchObject({ revoked: 1 });
      await gaugeReaches(server, 0, 'the revoke to count');
      // A wrong secret leaves the session in grace, its loss kept.
      const wrong = await connect(`?session=${String(welcome.session)}&resume=${'x'.repeat(32)}`);
      expect(wrong.welcome).toMatchObject({ resumed: false });
      expect(await lostBeforePong(wrong.client)).toEqual([]);
      const { client: again, welcome: resumed } = await connect(resumeQuery(welcome));
      expect(resumed).toMatchObject({ resumed: true, held: [] });
      expect(await lostBeforePong(again)).toEqual([{ type: 'lost', key: 'k', token: grant.token, reason: 'revoked' }]);
    });

    it('hands the lockwire client the real reason of each lock lost during the grace, and keeps the lock still held', async () => {
      const { server, clock, connect, lostBeforePong } = await start();
      const proxy = await startTcpProxy(server.port);
      proxies.push(proxy);
      const client = await LockClient.connect(proxy.url(server.url), { reconnect: { initialDelay: 1, maxDelay: 20, jitter: 0 } });
      lockClients.push(client);
      const take = async (key: string, holdTimeout?: number) => {
        const lease = await client.acquire(key, holdTimeout === undefined ? {} : { holdTimeout });
        if (!lease) throw new Error(`${key} not granted`);
        return lease;
      };
      const expired = await take('expired', 1000);
      const stolen = await take('stolen');
      const revoked = await take('revoked');
      const kept = await take('kept');
      const { client: other } = await connect();
      const lostEvents: unknown[] = [];
      client.on('lost', (lost) => lostEvents.push(lost));

      proxy.refuse();
      await within(
        (async () => {
          while (server.sessionCount() !== 1) await new Promise((resolve) => setTimeout(resolve, 5));
        })(),
        'the server to see the drop',
      );
      clock.advance(1000);
      await gaugeReaches(server, 3, 'the expiry to count');
      expect(await other.request({ op: 'acquire', id: 1, key: 'stolen', steal: true })).toMatchObject({ acquired: true });
      expect(await other.request({ op: 'revoke', id: 2, key: 'revoked' })).toMatchObject({ revoked: 1 });
      // Not told yet: the client is offline, its leases wait for the resume.
      expect([expired, stolen, revoked, kept].map((lease) => lease.held)).toEqual([true, true, true, true]);

      const reconnected = new Promise<unknown>((resolve) => client.on('reconnect', resolve));
      proxy.resume();
      expect(await within(reconnected, 'the resume')).toMatchObject({ resumed: true });
      expect(await abortReason(expired)).toMatchObject({ code: 'expired' });
      expect(await abortReason(stolen)).toMatchObject({ code: 'stolen' });
      expect(await abortReason(revoked)).toMatchObject({ code: 'revoked' });
      expect(lostEvents).toHaveLength(3);
      expect(kept.held).toBe(true);
      expect(kept.signal.aborted).toBe(false);
      expect([...client.leases.keys()]).toEqual(['kept']);
      expect(await lostBeforePong(other)).toEqual([]);
      await kept.release();
      expect(await other.request({ op: 'status', id: 3, key: 'kept' })).toMatchObject({ locked: false });
    });
  });
}
