import { afterEach, describe, expect, it, vi } from 'vitest';
import { createManualClock, systemClock } from '../src/clock.js';
import { GraceRegistry } from '../src/grace-registry.js';
import { createMemoryStore } from '../src/memory-store.js';
import { RateLimiter } from '../src/rate-limit.js';
import { createLockServer, type LockServer } from '../src/server.js';
import type { AcquireInput, StoreListener } from '../src/store.js';
import { SECRET, connectWith, startServer, token } from './auth-harness.js';
import { acquireInput, RawClient, within } from './server-harness.js';

const HOUR = 3_600_000;
/** The manual clocks' wall clock at the start of each test. */
const START = 1_700_000_000_000;

/** A memory store on a manual clock (wall clock at `START`) whose listener writes every call as a line. */
async function storeHarness(options: { tokenSeed?: () => number } = { tokenSeed: () => 1 }) {
  const clock = createManualClock(START);
  const store = createMemoryStore({ clock, ...options });
  const calls: string[] = [];
  const listener: StoreListener = {
    granted: (session, ticket, grant) => calls.push(`granted ${session} #${ticket} exp=${grant.expiresAt}`),
    acquireTimedOut: (session, ticket) => calls.push(`timedOut ${session} #${ticket}`),
    waitDone: (session, ticket, free) => calls.push(`waitDone ${session} #${ticket} ${free}`),
    lost: (session, lost) => calls.push(`lost ${session} ${lost.key} ${lost.reason}`),
  };
  await store.start(listener);
  let tickets = 0;
  const acquire = (session: string, key: string, input: Partial<Omit<AcquireInput, 'key'>> = {}) =>
    store.acquire(session, acquireInput(++tickets, key, input));
  const wait = (session: string, key: string, timeout: number) =>
    store.wait(session, { ticket: ++tickets, key, timeout });
  /** Returns and forgets the listener calls so far. */
  const take = () => calls.splice(0);
  return { clock, store, acquire, wait, take };
}

/**
 * A hold of `k` by `a`, a queued acquire of `j` by `b` and a wait on `j` by
 * `c`, each timing out `ms` after it was made; `j` is held by `h` forever.
 */
async function threeTimeouts(h: Awaited<ReturnType<typeof storeHarness>>, ms: number) {
  expect(await h.acquire('a', 'k', { holdTimeout: ms })).toMatchObject({ status: 'granted' });
  expect(await h.acquire('h', 'j')).toMatchObject({ status: 'granted' });
  expect(await h.acquire('b', 'j', { acquireTimeout: ms })).toEqual({ status: 'queued', position: 1 });
  expect(await h.wait('c', 'j', ms)).toBe('pending');
}

describe('the memory store when the wall clock steps', () => {
  it('a forward step of the wall clock ends no hold, acquire timeout or wait timeout before its time', async () => {
    const h = await storeHarness();
    await threeTimeouts(h, 60_000);
    h.clock.stepWall(HOUR);
    // The next request runs whatever it finds due: nothing is, 0 ms have passed.
    const [k, j] = [await h.store.status('k', null), await h.store.status('j', null)];
    expect(k.holders.map((holder) => holder.session)).toEqual(['a']);
    expect(j.queue.map((waiter) => waiter.session)).toEqual(['b']);
    expect(h.take()).toEqual([]);
    h.clock.advance(59_999);
    await h.store.status('k', null);
    expect(h.take()).toEqual([]);
    h.clock.advance(1);
    expect(h.take()).toEqual(['lost a k expired', 'timedOut b #3', 'waitDone c #4 false']);
  });

  it('a backward step of the wall clock keeps no hold, acquire timeout or wait timeout past its time', async () => {
    const h = await storeHarness();
    await threeTimeouts(h, 300);
    h.clock.stepWall(-HOUR);
    h.clock.advance(299);
    expect(h.take()).toEqual([]);
    h.clock.advance(1);
    expect(h.take()).toEqual(['lost a k expired', 'timedOut b #3', 'waitDone c #4 false']);
    expect(h.store.inspect()).toMatchObject({ pendingDeadlines: 0, timerArmed: false });
  });

  it('reports expiresAt on the wall clock as it read at the grant, and an extend counts its own holdTimeout from then', async () => {
    const h = await storeHarness();
    expect(await h.acquire('a', 'k', { holdTimeout: 1_000 })).toMatchObject({ expiresAt: START + 1_000 });
    h.clock.advance(400);
    h.clock.stepWall(HOUR);
    expect((await h.store.status('k', null)).holders[0]?.expiresAt).toBe(START + 1_000);
    // The wall clock reads START + 400 + HOUR: the extend reports that plus 500, and the hold lasts 500 ms more.
    expect(await h.store.extend('a', 'k', 500)).toBe(START + 900 + HOUR);
    h.clock.stepWall(-2 * HOUR);
    h.clock.advance(499);
    expect(h.take()).toEqual([]);
    h.clock.advance(1);
    expect(h.take()).toEqual(['lost a k expired']);
  });

  it('grants a waiter after a step with expiresAt on the stepped wall clock and a hold of holdTimeout', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k', { holdTimeout: 100 });
    await h.acquire('b', 'k', { holdTimeout: 50 });
    h.clock.stepWall(-HOUR);
    h.clock.advance(100);
    expect(h.take()).toEqual(['lost a k expired', `granted b #2 exp=${START + 150 - HOUR}`]);
    expect((await h.store.status('k', null)).holders[0]).toMatchObject({ session: 'b', since: START + 100 - HOUR });
    h.clock.advance(49);
    expect(h.take()).toEqual([]);
    h.clock.advance(1);
    expect(h.take()).toEqual(['lost b k expired']);
  });

  it('seeds fencing tokens from the wall clock, still rising when it steps back', async () => {
    const h = await storeHarness({});
    const token = async (session: string) => {
      const outcome = await h.acquire(session, `key of ${session}`);
      if (outcome.status !== 'granted') throw new Error(`expected a grant to ${session}`);
      return outcome.token;
    };
    expect(await token('a')).toBe(START * 1_000);
    h.clock.stepWall(HOUR);
    expect(await token('b')).toBe((START + HOUR) * 1_000);
    h.clock.stepWall(-2 * HOUR);
    expect(await token('c')).toBe((START + HOUR) * 1_000 + 1);
  });
});

describe('session grace when the wall clock steps', () => {
  it.each([
    ['forward', HOUR],
    ['backward', -HOUR],
  ])('a session put back in grace by a failed resume keeps the rest of its grace, however the wall clock stepped %s', (_, step) => {
    const clock = createManualClock(START);
    const ended: string[] = [];
    const registry = new GraceRegistry({ grace: 10_000, clock, expired: (session) => void ended.push(session) });
    registry.hold({ session: 's', secret: 'secret', user: null, keys: new Set(['k']) });
    clock.advance(4_000);
    const claimed = registry.claim('s', 'secret', null);
    if (claimed === null) throw new Error('expected the session to be claimed');
    clock.stepWall(step);
    // The resume failed: the session goes back into grace until its first deadline, 6 s away.
    registry.hold(claimed.detached, Promise.resolve(), claimed.deadline, claimed.losses);
    expect({ ended, inGrace: registry.size }).toEqual({ ended: [], inGrace: 1 });
    clock.advance(5_999);
    expect(ended).toEqual([]);
    clock.advance(1);
    expect({ ended, inGrace: registry.size }).toEqual({ ended: ['s'], inGrace: 0 });
  });
});

describe('credentials expiring while connected when the wall clock steps', () => {
  it.each([
    ['forward', HOUR],
    ['backward', -HOUR],
  ])('a session ends when what was left of its exp at the open has passed, however the wall clock stepped %s', async (_, step) => {
    const { server, clock } = await startServer({ auth: { secret: SECRET } });
    // 30 s left of exp (whole seconds) when the connection opens.
    clock.set(Math.ceil(clock.now() / 1_000) * 1_000);
    const exp = clock.now() / 1_000 + 30;
    const { client } = await connectWith(server.url, await token({ sub: 'ana', locks: ['*'], exp }, { now: clock.now() }));
    clock.stepWall(step);
    expect(await client.request({ op: 'acquire', id: 1, key: 'a' })).toMatchObject({ ok: true, acquired: true });
    clock.advance(29_999);
    expect(await client.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true });
    clock.advance(1);
    expect(await client.next((f) => f.type === 'lost', 'the lost of a')).toMatchObject({ key: 'a', reason: 'revoked' });
    expect(await within(client.closed, 'the 1008 close')).toMatchObject({ code: 1008 });
  });
});

describe('the rate limiter when the wall clock steps', () => {
  it('a forward step of the wall clock refills no tokens', () => {
    const clock = createManualClock(START);
    const limiter = new RateLimiter({ rate: 1, burst: 5, abuseAfterMs: 3_000, abuseAfterFrames: 1_000 }, clock);
    for (let i = 0; i < 5; i++) expect(limiter.take()).toBe('accept');
    clock.stepWall(HOUR);
    expect(limiter.take()).toBe('refuse');
  });

  it('a backward step of the wall clock does not put off the abuse verdict of a sender limited for abuseAfterMs', () => {
    const clock = createManualClock(START);
    // Next to no refill: every frame after the first is refused.
    const limiter = new RateLimiter({ rate: 0.001, burst: 1, abuseAfterMs: 3_000, abuseAfterFrames: 1_000 }, clock);
    expect([limiter.take(), limiter.take()]).toEqual(['accept', 'refuse']);
    clock.stepWall(-HOUR);
    const verdicts: string[] = [];
    for (let t = 500; t <= 3_000; t += 500) {
      clock.advance(500);
      verdicts.push(limiter.take());
    }
    expect(verdicts).toEqual(['refuse', 'refuse', 'refuse', 'refuse', 'refuse', 'abuse']);
  });
});

/**
 * Steps the machine's wall clock (`Date.now()`) by `ms` more, as an NTP step,
 * a VM resume or `date -s` does, while Node's timers and `performance.now()`
 * keep running as on a real machine.
 */
function stepWallClock(ms: number): void {
  const real = Date.now.bind(Date);
  const stepped = vi.isMockFunction(Date.now) ? Date.now() - real() : 0;
  vi.spyOn(Date, 'now').mockImplementation(() => real() + stepped + ms);
}

describe('a server on the real clock when the wall clock steps', () => {
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];

  afterEach(async () => {
    vi.restoreAllMocks();
    for (const client of clients.splice(0)) client.ws.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  async function start() {
    const store = createMemoryStore({ clock: systemClock });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock: systemClock, store });
    servers.push(server);
    return async () => {
      const connection = await RawClient.connect(server.url);
      clients.push(connection.client);
      return Object.assign(connection.client, { session: String(connection.welcome['session']) });
    };
  }

  it('a forward step of an hour ends neither a 60 s hold nor a 60 s acquire timeout at once', async () => {
    const connect = await start();
    const [holder, waiter, viewer] = [await connect(), await connect(), await connect()];
    expect(await holder.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: 60_000 })).toMatchObject({ acquired: true });
    waiter.send({ op: 'acquire', id: 1, key: 'k', acquireTimeout: 60_000 });
    await waiter.next((f) => f.type === 'queued', 'queued');
    stepWallClock(HOUR);
    const status = await viewer.request({ op: 'status', id: 1, key: 'k' });
    const sessions = (list: unknown) => (list as Array<{ session: string }>).map((x) => x.session);
    expect({ holders: sessions(status['holders']), queue: sessions(status['queue']) }).toEqual({
      holders: [holder.session],
      queue: [waiter.session],
    });
  });

  it('a backward step of an hour holds back neither a 300 ms hold nor a 300 ms acquire timeout', async () => {
    const connect = await start();
    const [holder, other, waiter] = [await connect(), await connect(), await connect()];
    expect(await holder.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: 300 })).toMatchObject({ acquired: true });
    expect(await other.request({ op: 'acquire', id: 1, key: 'j' })).toMatchObject({ acquired: true });
    waiter.send({ op: 'acquire', id: 1, key: 'j', acquireTimeout: 300 });
    await waiter.next((f) => f.type === 'queued', 'queued');
    stepWallClock(-HOUR);
    const lost = await holder.next((f) => f.type === 'lost', 'the lost of the 300 ms hold', 3_000);
    expect(lost).toMatchObject({ key: 'k', reason: 'expired' });
    expect(await waiter.next((f) => f.type === 'reply' && f.id === 1, 'the not-granted answer', 3_000)).toMatchObject({
      ok: true,
      acquired: false,
    });
  });
});
