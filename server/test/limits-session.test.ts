import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { RATE_ABUSE_MIN_FRAMES } from '../src/limits.js';
import { RateLimiter } from '../src/rate-limit.js';
import { createManualClock } from '../src/clock.js';
import { connectWith, SECRET, startServer, token, upgradeStatus } from './auth-harness.js';
import { resumeQuery } from './grace-scenarios.js';
import { sessionLog, within } from './server-harness.js';
import { silentHolderWithWaiter } from './silent-holder.js';
import { connectionsGauge, openSilentPeer, PING_FLOOD, ServerOpcode } from './silent-peer.js';
import { RawSocket } from '../../test/helpers/raw-socket.js';

const GRACE = 60_000;

/**
 * Frames `ws` closes the connection for on its own, each with the code it
 * closes with, on a server whose `maxPayload` is 2048: a failure of one
 * frame, not a policy close.
 */
const FRAME_FAILURES: ReadonlyArray<[what: string, code: number, frame: Buffer]> = [
  ['a frame over maxPayload', 1009, RawSocket.json({ op: 'ping', id: 3, pad: 'y'.repeat(4096) })],
  ['a text frame that is not UTF-8', 1007, RawSocket.frame(ServerOpcode.Text, Buffer.from([0xff, 0xfe]))],
  // A client's frame must be masked (RFC 6455): this one, `{}`, is not.
  ['an unmasked frame', 1002, Buffer.from([0x81, 0x02, 0x7b, 0x7d])],
];

describe('limits in the welcome', () => {
  it('announces every limit, configured or default', async () => {
    const { server } = await startServer({ limits: { maxWatchesPerSession: 3, rateBurst: 50 } });
    const { welcome } = await connectWith(server.url, null);
    expect(welcome.limits).toEqual({
      maxPayload: 65536,
      maxKeyLength: 256,
      maxLocksPerSession: 1000,
      maxWaitersPerKey: 10000,
      maxWatchesPerSession: 3,
      maxPendingPerSession: 1000,
      maxConnections: 10000,
      maxBufferedBytes: 4 * 1024 * 1024,
      rateLimit: 1000,
      rateBurst: 50,
    });
  });

  it('refuses an unknown or non-positive limit', async () => {
    await expect(startServer({ limits: { rateLimit: 0 } })).rejects.toThrow(/rateLimit/);
  });

  it('announces and enforces the maxLocksPerSession and maxWaitersPerKey of a store passed in, which its own limits option sets', async () => {
    const store = createMemoryStore({ limits: { maxLocksPerSession: 2, maxWaitersPerKey: 1 } });
    const { server } = await startServer({ store, limits: { maxWaitersPerKey: 1, rateBurst: 50 } });
    const { client: a, welcome } = await connectWith(server.url, null);
    expect(welcome.limits).toMatchObject({ maxLocksPerSession: 2, maxWaitersPerKey: 1, rateBurst: 50 });
    await a.request({ op: 'acquire', id: 1, key: 'k1' });
    await a.request({ op: 'acquire', id: 2, key: 'k2' });
    expect(await a.request({ op: 'acquire', id: 3, key: 'k3' })).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
    const { client: b } = await connectWith(server.url, null);
    const { client: c } = await connectWith(server.url, null);
    b.send({ op: 'acquire', id: 1, key: 'k1' });
    expect(await b.next((f) => f.type === 'queued')).toMatchObject({ id: 1 });
    expect(await c.request({ op: 'acquire', id: 1, key: 'k1' })).toMatchObject({ ok: false, error: { code: 'too_many_waiters' } });
  });

  it('refuses to start with a maxLocksPerSession or maxWaitersPerKey other than the store passed in enforces, naming both values', async () => {
    const store = createMemoryStore({ limits: { maxWaitersPerKey: 5 } });
    await expect(startServer({ store, limits: { maxLocksPerSession: 2 } })).rejects.toThrow(
      /limits\.maxLocksPerSession is 2, but the memory store passed as `store` enforces 1000/,
    );
    await expect(startServer({ store, limits: { maxWaitersPerKey: 6 } })).rejects.toThrow(
      /limits\.maxWaitersPerKey is 6, but the memory store passed as `store` enforces 5/,
    );
  });
});

describe('per-session limits', () => {
  it('answers a watch of one prefix too many with bad_request, counting a prefix once', async () => {
    const { server } = await startServer({ limits: { maxWatchesPerSession: 2 } });
    const { client } = await connectWith(server.url, null);
    await client.request({ op: 'watch', id: 1, prefix: 'a' });
    await client.request({ op: 'watch', id: 2, prefix: 'b' });
    expect(await client.request({ op: 'watch', id: 3, prefix: 'a' })).toMatchObject({ ok: true });
    expect(await client.request({ op: 'watch', id: 4, prefix: 'c' })).toMatchObject({
      ok: false,
      error: { code: 'bad_request', message: expect.stringContaining('maxWatchesPerSession') },
    });
    await client.request({ op: 'unwatch', id: 5, prefix: 'a' });
    expect(await client.request({ op: 'watch', id: 6, prefix: 'c' })).toMatchObject({ ok: true });
  });

  it('answers a request past maxPendingPerSession with rate_limited, still accepting cancel', async () => {
    const { server } = await startServer({ limits: { maxPendingPerSession: 2 } });
    const { client: holder } = await connectWith(server.url, null);
    const { client } = await connectWith(server.url, null);
    await holder.request({ op: 'acquire', id: 1, key: 'a' });
    client.send({ op: 'wait', id: 1, key: 'a' });
    client.send({ op: 'wait', id: 2, key: 'a' });
    expect(await client.request({ op: 'acquire', id: 3, key: 'b' })).toMatchObject({
      ok: false,
      error: { code: 'rate_limited', message: expect.stringContaining('maxPendingPerSession') },
    });
    expect(await holder.request({ op: 'status', id: 2, key: 'b' })).toMatchObject({ locked: false });
    expect(await client.request({ op: 'cancel', id: 4, target: 1 })).toMatchObject({ ok: true, cancelled: true });
    expect(await client.request({ op: 'acquire', id: 5, key: 'b' })).toMatchObject({ ok: true, acquired: true });
  });

  it('answers too_many_locks and too_many_waiters at their limits', async () => {
    const { server } = await startServer({ limits: { maxLocksPerSession: 2, maxWaitersPerKey: 1 } });
    const { client } = await connectWith(server.url, null);
    await client.request({ op: 'acquire', id: 1, key: 'a' });
    await client.request({ op: 'acquire', id: 2, key: 'b' });
    expect(await client.request({ op: 'acquire', id: 3, key: 'c' })).toMatchObject({ error: { code: 'too_many_locks' } });
    const { client: first } = await connectWith(server.url, null);
    const { client: second } = await connectWith(server.url, null);
    first.send({ op: 'acquire', id: 1, key: 'a' });
    await first.next((f) => f.type === 'queued');
    expect(await second.request({ op: 'acquire', id: 1, key: 'a' })).toMatchObject({ error: { code: 'too_many_waiters' } });
  });

  it('closes a connection sending a frame over maxPayload with 1009', async () => {
    const { server } = await startServer({ limits: { maxPayload: 2048 } });
    const { client } = await connectWith(server.url, null);
    client.send({ op: 'ping', id: 'x'.repeat(10), pad: 'y'.repeat(4096) });
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1009 });
  });

  it('cuts a connection closed for a frame over maxPayload when the peer leaves the close unanswered for 2 s', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({
      limits: { maxPayload: 2048, maxConnections: 1 },
      logger: sessions.logger,
    });
    const peer = await openSilentPeer(server.url);
    peer.write(RawSocket.json({ op: 'ping', id: 1, pad: 'y'.repeat(4096) }));
    expect(await peer.closeFrame()).toBe(1009);
    expect(await upgradeStatus(server.url)).toBe(503);
    clock.advance(2000);
    await sessions.closed(1, 'the cut connection to close');
    expect(await upgradeStatus(server.url)).toBe(101);
  });

  it('ends the session of a connection closed for a frame over maxPayload at once, before its unanswered close is cut', async () => {
    const { server } = await startServer({ limits: { maxPayload: 2048 } });
    const { peer, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(RawSocket.json({ op: 'ping', id: 3, pad: 'y'.repeat(4096) }));
    expect(await peer.closeFrame()).toBe(1009);
    // The manual clock never reaches the 2 s cut: only the session's end can grant the waiter.
    expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
    expect(server.sessionCount()).toBe(1);
  });

  /**
   * A holder of `k` (with a waiter queued) sends `frame`, is closed with `code`, and the clock is moved to 1 ms
   * before its grace ends: its session still holds `k`.
   */
  async function heldToTheGraceEnd(code: number, frame: Buffer) {
    const { server, clock } = await startServer({ limits: { maxPayload: 2048 }, sessionGrace: GRACE });
    const { peer, welcome, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(frame);
    expect(await peer.closeFrame()).toBe(code);
    clock.advance(GRACE - 1);
    expect(await waiter.request({ op: 'status', id: 'status', key: 'k' })).toMatchObject({
      holders: [{ session: welcome.session }],
    });
    return { server, clock, welcome, waiter };
  }

  it.each(FRAME_FAILURES)(
    'with session grace on, keeps the locks of a connection closed for %s (%i) for the grace, and its session resumes',
    async (_what, code, frame) => {
      const { server, welcome, waiter } = await heldToTheGraceEnd(code, frame);
      expect(waiter.inbox).toEqual([]);
      const { client, welcome: resumed } = await connectWith(`${server.url}${resumeQuery(welcome)}`, null);
      expect(resumed).toMatchObject({ session: welcome.session, resumed: true, held: [{ key: 'k' }] });
      expect(await client.request({ op: 'release', id: 1, key: 'k' })).toMatchObject({ ok: true, released: true });
      expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
    },
  );

  it.each(FRAME_FAILURES)(
    'with session grace on, releases the locks of a connection closed for %s (%i) when the grace runs out without a resume',
    async (_what, code, frame) => {
      const { server, clock, welcome, waiter } = await heldToTheGraceEnd(code, frame);
      clock.advance(1);
      expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
      const { welcome: late } = await connectWith(`${server.url}${resumeQuery(welcome)}`, null);
      expect(late).toMatchObject({ resumed: false, held: [] });
    },
  );
});

describe('maxConnections', () => {
  it('refuses upgrades past the limit with 503 and admits again once a connection closed', async () => {
    const sessions = sessionLog();
    const { server } = await startServer({ limits: { maxConnections: 2 }, logger: sessions.logger });
    const { client } = await connectWith(server.url, null);
    await connectWith(server.url, null);
    expect(await upgradeStatus(server.url)).toBe(503);
    await client.close();
    await sessions.closed(1, 'the session to end');
    expect(server.sessionCount()).toBe(1);
    expect(await upgradeStatus(server.url)).toBe(101);
  });

  it('counts a connection closed for abuse until its socket is gone, and cuts it when the peer leaves the close unanswered for 2 s', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({
      limits: { maxConnections: 1, rateLimit: 1, rateBurst: 1 },
      logger: sessions.logger,
    });
    const peer = await openSilentPeer(server.url);
    peer.write(...PING_FLOOD);
    expect(await peer.closeFrame()).toBe(1008);
    expect(server.sessionCount()).toBe(0);
    expect(await upgradeStatus(server.url)).toBe(503);
    expect(await connectionsGauge(server.httpUrl)).toBe(1);
    clock.advance(1999);
    expect(await upgradeStatus(server.url)).toBe(503);
    expect(peer.isCut()).toBe(false);
    clock.advance(1);
    await peer.cut();
    await sessions.closed(1, 'the cut connection to close');
    expect(await connectionsGauge(server.httpUrl)).toBe(0);
    expect(await upgradeStatus(server.url)).toBe(101);
  });

  it('counts a connection closed for expired credentials until its socket is gone, and cuts it after 2 s', async () => {
    const sessions = sessionLog();
    const { server, clock } = await startServer({
      auth: { secret: SECRET },
      limits: { maxConnections: 1 },
      logger: sessions.logger,
    });
    const short = await token({ sub: 'ana', locks: ['*'] }, { now: clock.now(), ttlSeconds: 10 });
    const peer = await openSilentPeer(server.url, { authorization: `Bearer ${short}` });
    clock.advance(10_000);
    expect(await peer.closeFrame()).toBe(1008);
    const fresh = await token({ sub: 'bo', locks: ['*'] }, { now: clock.now() });
    const headers = { authorization: `Bearer ${fresh}` };
    expect(await upgradeStatus(server.url, { headers })).toBe(503);
    clock.advance(2000);
    await peer.cut();
    await sessions.closed(1, 'the cut connection to close');
    expect(await upgradeStatus(server.url, { headers })).toBe(101);
  });
});

describe('message rate', () => {
  it('answers frames past the burst rate_limited without processing them, then closes 1008', async () => {
    const { server } = await startServer({ limits: { rateBurst: 4, rateLimit: 1 } });
    const { client } = await connectWith(server.url, null);
    const { client: observer } = await connectWith(server.url, null);
    for (let id = 1; id <= 4; id++) expect(await client.request({ op: 'ping', id })).toMatchObject({ ok: true });
    expect(await client.request({ op: 'acquire', id: 5, key: 'k' })).toMatchObject({
      ok: false,
      id: 5,
      error: { code: 'rate_limited' },
    });
    expect(await observer.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({ locked: false });
    // The acquire was refusal 1 of the streak; the frame that makes it RATE_ABUSE_MIN_FRAMES is not answered.
    for (let id = 6; id < 6 + RATE_ABUSE_MIN_FRAMES; id++) client.send({ op: 'ping', id });
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1008 });
    const codes = client.inbox.map((f) => (f.error as { code?: string } | undefined)?.code);
    expect(codes).toEqual(Array.from({ length: RATE_ABUSE_MIN_FRAMES - 2 }, () => 'rate_limited'));
    expect(await observer.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true });
  });

  it('with session grace on, releases the locks of a connection closed for abuse at once, and its session cannot be resumed', async () => {
    const { server } = await startServer({ limits: { rateLimit: 1, rateBurst: 1 }, sessionGrace: GRACE });
    const { peer, welcome, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(...PING_FLOOD);
    expect(await peer.closeFrame()).toBe(1008);
    // Granted with the clock standing still: no grace ran out.
    expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
    const { welcome: late } = await connectWith(`${server.url}${resumeQuery(welcome)}`, null);
    expect(late).toMatchObject({ resumed: false, held: [] });
    expect(late.session).not.toBe(welcome.session);
  });

  it('with a burst of 1 refuses a frame over the rate but keeps the connection, and closes only a sustained streak', async () => {
    const { server, clock } = await startServer({ limits: { rateBurst: 1, rateLimit: 1 } });
    const { client } = await connectWith(server.url, null);
    expect(await client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
    expect(await client.request({ op: 'ping', id: 2 })).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    clock.advance(1000);
    expect(await client.request({ op: 'ping', id: 3 })).toMatchObject({ ok: true });
    clock.advance(5000);
    // A burst of 1 holds one token however long the pause: the first ping after it is answered...
    expect(await client.request({ op: 'ping', id: 4 })).toMatchObject({ ok: true });
    // ...and a flood right after gets refusals until the streak is abuse; the close ends the rest unanswered.
    for (let id = 5; id < 5 + 2 * RATE_ABUSE_MIN_FRAMES; id++) client.send({ op: 'ping', id });
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1008 });
    expect(client.inbox.filter((f) => f.ok === true)).toHaveLength(0);
    expect(client.inbox.filter((f) => f.ok === false)).toHaveLength(RATE_ABUSE_MIN_FRAMES - 1);
  });

  it('answers duplicate_id, not rate_limited, to a frame over the rate that reuses a pending id', async () => {
    const { server } = await startServer({ limits: { rateBurst: 2, rateLimit: 1 } });
    const { client } = await connectWith(server.url, null);
    const { client: holder } = await connectWith(server.url, null);
    expect(await holder.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    client.send({ op: 'acquire', id: 1, key: 'k' });
    await client.next((f) => f.type === 'queued', 'the queued acquire');
    expect(await client.request({ op: 'ping', id: 2 })).toMatchObject({ ok: true });
    expect(await client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: false, error: { code: 'duplicate_id' } });
    expect(await client.request({ op: 'ping', id: 3 })).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    await holder.request({ op: 'release', id: 2, key: 'k' });
    expect(await client.reply(1)).toMatchObject({ ok: true, acquired: true });
  });

  it('refills the bucket with time: a sender within its rate is never refused', async () => {
    const { server, clock } = await startServer({ limits: { rateBurst: 2, rateLimit: 10 } });
    const { client } = await connectWith(server.url, null);
    for (let id = 1; id <= 20; id++) {
      expect(await client.request({ op: 'ping', id })).toMatchObject({ ok: true });
      clock.advance(100);
    }
  });

  it('starts a new streak with a refusal a second after the last: a sender one frame over the rate each second is never closed', async () => {
    const { server, clock } = await startServer({ limits: { rateLimit: 1, rateBurst: 1 } });
    const { client } = await connectWith(server.url, null);
    // Refusals exactly 1000 ms apart, over more than the three seconds a streak may last.
    for (let round = 0; round < 4; round++) {
      expect(await client.request({ op: 'ping', id: `a${round}` })).toMatchObject({ ok: true });
      const refused = await client.request({ op: 'ping', id: `b${round}` });
      expect(refused).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
      clock.advance(1000);
    }
  });

  it('calls a streak of limiting abuse after three seconds even when frames get through in between', () => {
    const clock = createManualClock(0);
    const limiter = new RateLimiter({ rate: 1, burst: 1, abuseAfterMs: 3000, abuseAfterFrames: 1000 }, clock);
    expect(limiter.take()).toBe('accept');
    const verdicts: string[] = [];
    for (let t = 0; t < 3000; t += 500) {
      verdicts.push(limiter.take(), limiter.take());
      clock.advance(500);
    }
    expect(verdicts).toContain('accept');
    expect(verdicts).not.toContain('abuse');
    expect([limiter.take(), limiter.take()]).toContain('abuse');
    clock.advance(5000);
    expect(limiter.take()).toBe('accept');
    expect(limiter.take()).toBe('refuse');
  });

  it('counts WebSocket ping frames against the frame budget: past it they get no pong, and a flood of them is closed with 1008', async () => {
    const { server } = await startServer({ limits: { rateLimit: 1, rateBurst: 1 } });
    const peer = await openSilentPeer(server.url);
    const ping = (n: number) => RawSocket.frame(0x9, Buffer.from(`ping ${n}`));
    peer.write(...Array.from({ length: 2 * RATE_ABUSE_MIN_FRAMES }, (_, n) => ping(n)));
    expect(await peer.closeFrame()).toBe(1008);
    const pongs = peer.frames().filter((frame) => frame.opcode === ServerOpcode.Pong);
    expect(pongs.map((frame) => frame.payload.toString())).toEqual(['ping 0']);
  });

  it('counts unsolicited WebSocket pong frames against the frame budget: a flood of them is closed with 1008', async () => {
    const { server } = await startServer({ limits: { rateLimit: 1, rateBurst: 1 } });
    const peer = await openSilentPeer(server.url);
    const pong = (n: number) => RawSocket.frame(0xa, Buffer.from(`pong ${n}`));
    peer.write(...Array.from({ length: 2 * RATE_ABUSE_MIN_FRAMES }, (_, n) => pong(n)));
    expect(await peer.closeFrame()).toBe(1008);
  });

  it('takes nothing from the frame budget for the pongs answering the heartbeat: a client that only answered it still has its whole burst', async () => {
    const { server } = await startServer({ clock: systemClock, store: createMemoryStore(), heartbeatInterval: 20, limits: { rateLimit: 1, rateBurst: 1 } });
    const { client } = await connectWith(server.url, null);
    await within(
      new Promise<void>((resolve) => {
        let pings = 0;
        client.ws.on('ping', () => ++pings === 5 && resolve());
      }),
      'five heartbeat pings, each answered with a pong',
    );
    expect(await client.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
  });

  it('keeps other sessions fast while one floods, and closes the flooder', async () => {
    const { server } = await startServer({ clock: systemClock, store: createMemoryStore() });
    const { client: flooder } = await connectWith(server.url, null);
    const { client: other } = await connectWith(server.url, null);
    const frame = JSON.stringify({ op: 'ping', id: 1 });
    const flooding = (async () => {
      for (let i = 0; i < 40 && flooder.ws.readyState === flooder.ws.OPEN; i++) {
        for (let j = 0; j < 500; j++) flooder.ws.send(frame.replace('1', String(i * 500 + j)));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const latencies: number[] = [];
    for (let id = 1; id <= 30; id++) {
      const started = performance.now();
      await other.request({ op: 'ping', id });
      latencies.push(performance.now() - started);
    }
    await flooding;
    expect(await within(flooder.closed, 'the flooder to be closed')).toMatchObject({ code: 1008 });
    latencies.sort((a, b) => a - b);
    // The median measures the other session's service; the slowest ping only rules out a stall
    // of seconds (a 2-core machine running the suite's other files beside this one can stall the
    // process for about a second).
    expect(latencies[Math.floor(latencies.length / 2)]).toBeLessThan(100);
    expect(latencies.at(-1)).toBeLessThan(2500);
    expect(await other.request({ op: 'acquire', id: 'last', key: 'k' })).toMatchObject({ ok: true, acquired: true });
  });
});
