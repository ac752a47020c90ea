import { afterEach, describe, expect, it, vi } from 'vitest';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { RawClient, within, type Frame } from './server-harness.js';

const servers: LockServer[] = [];
const clients: RawClient[] = [];

/** Tests advance time by hand, so the clock given (if any) is a manual one. */
async function start(options: LockServerOptions & { clock?: ManualClock } = {}) {
  const clock = options.clock ?? createManualClock();
  const store = createMemoryStore({ clock, limits: options.limits });
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, store, ...options });
  servers.push(server);
  const connect = async () => {
    const connection = await RawClient.connect(server.url);
    clients.push(connection.client);
    return connection;
  };
  return { server, store, clock, connect };
}

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

const queueOf = (status: Frame) => status.queue as Array<{ session: string }>;

describe('session layer on the memory store', () => {
  for (const how of ['close', 'terminate'] as const) {
    it(`a ${how} releases the session's locks and grants the next waiter`, async () => {
      const { connect } = await start();
      const { client: holder } = await connect();
      const { client: waiter } = await connect();
      expect(await holder.request({ op: 'acquire', id: 1, key: 'room' })).toMatchObject({ acquired: true });
      waiter.send({ op: 'acquire', id: 'w', key: 'room' });
      expect(await waiter.next()).toEqual({ type: 'queued', id: 'w', key: 'room', position: 1 });
      if (how === 'close') holder.ws.close();
      else holder.ws.terminate();
      expect(await waiter.reply('w')).toMatchObject({ ok: true, acquired: true, token: expect.any(Number) });
    });
  }

  it('a disconnect removes the session from the queues it waited in', async () => {
    const { connect, store, server } = await start();
    const { client: holder, welcome } = await connect();
    const { client: waiter } = await connect();
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    waiter.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.next((f) => f.type === 'queued');
    await waiter.close();
    await vi.waitUntil(() => server.sessionCount() === 1, { timeout: 2000 });
    const status = await holder.request({ op: 'status', id: 2, key: 'k' });
    expect(queueOf(status)).toEqual([]);
    expect(status.holders).toEqual([expect.objectContaining({ session: welcome.session })]);
    await holder.close();
    await vi.waitUntil(() => server.sessionCount() === 0, { timeout: 2000 });
    expect(store.inspect()).toMatchObject({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });

  it('a cancelled acquire leaves the queue and is answered before the cancel', async () => {
    const { connect } = await start();
    const { client: holder } = await connect();
    const { client: waiter } = await connect();
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    waiter.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.next((f) => f.type === 'queued');
    waiter.send({ op: 'cancel', id: 2, target: 1 });
    expect(await waiter.next()).toMatchObject({ type: 'reply', id: 1, ok: false, error: { code: 'cancelled' } });
    expect(await waiter.next()).toEqual({ type: 'reply', id: 2, ok: true, cancelled: true });
    expect(queueOf(await holder.request({ op: 'status', id: 3, key: 'k' }))).toEqual([]);
    expect(await waiter.request({ op: 'cancel', id: 4, target: 1 })).toMatchObject({ cancelled: false });
  });

  it('times out a queued acquire and a wait on the injected clock', async () => {
    const { connect, clock } = await start({ clock: createManualClock() });
    const { client: holder } = await connect();
    const { client: other } = await connect();
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    other.send({ op: 'acquire', id: 1, key: 'k', acquireTimeout: 1000 });
    await other.next((f) => f.type === 'queued');
    other.send({ op: 'wait', id: 2, key: 'k', timeout: 500 });
    // Requests reach the store in arrival order: once the ping is answered, the wait is registered.
    await other.request({ op: 'ping', id: 3 });
    clock.advance(500);
    expect(await other.reply(2)).toEqual({ type: 'reply', id: 2, ok: true, free: false });
    expect(other.inbox).toEqual([]);
    clock.advance(500);
    expect(await other.reply(1)).toEqual({ type: 'reply', id: 1, ok: true, acquired: false });
  });

  it('sends lost expired to the holder before the next waiter is granted', async () => {
    const { connect, clock } = await start();
    const { client: holder } = await connect();
    const { client: waiter } = await connect();
    const grant = await holder.request({ op: 'acquire', id: 1, key: 'k', holdTimeout: 100 });
    waiter.send({ op: 'acquire', id: 1, key: 'k' });
    await waiter.next((f) => f.type === 'queued');
    clock.advance(100);
    expect(await holder.next()).toEqual({ type: 'lost', key: 'k', token: grant.token, reason: 'expired' });
    expect(await waiter.reply(1)).toMatchObject({ acquired: true });
  });

  it('answers too_many_locks from the store and keeps the connection', async () => {
    const { connect } = await start({ limits: { maxLocksPerSession: 1 } });
    const { client, welcome } = await connect();
    expect(welcome).toMatchObject({ limits: { maxLocksPerSession: 1 } });
    await client.request({ op: 'acquire', id: 1, key: 'a' });
    expect(await client.request({ op: 'acquire', id: 2, key: 'b' })).toMatchObject({
      ok: false,
      error: { code: 'too_many_locks' },
    });
    expect(await client.request({ op: 'release', id: 3, key: 'a' })).toMatchObject({ released: true });
  });

  it('streams watch events for the prefix after the snapshot', async () => {
    const { connect } = await start();
    const { client: watcher } = await connect();
    const { client: actor, welcome } = await connect();
    await actor.request({ op: 'acquire', id: 1, key: 'doc:1' });
    const snapshot = await watcher.request({ op: 'watch', id: 1, prefix: 'doc:' });
    expect(snapshot).toMatchObject({ ok: true, truncated: false, locks: [expect.objectContaining({ key: 'doc:1' })] });
    await actor.request({ op: 'acquire', id: 2, key: 'other' });
    await actor.request({ op: 'release', id: 3, key: 'doc:1' });
    expect(await watcher.next()).toMatchObject({
      type: 'event',
      key: 'doc:1',
      event: 'released',
      session: welcome.session,
      holders: 0,
      waiters: 0,
    });
    expect(watcher.inbox).toEqual([]);
  });

  it('close() answers a queued acquire shutting_down, closes with 1001 and leaves the store empty', async () => {
    const { connect, server, store } = await start();
    const { client: holder } = await connect();
    const { client: waiter } = await connect();
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    waiter.send({ op: 'acquire', id: 9, key: 'k' });
    await waiter.next((f) => f.type === 'queued');
    const closing = server.close();
    expect(await waiter.reply(9)).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
    expect(await within(waiter.closed, 'the waiter close')).toMatchObject({ code: 1001 });
    expect(await within(holder.closed, 'the holder close')).toMatchObject({ code: 1001 });
    await within(closing, 'close()');
    expect(store.inspect()).toMatchObject({ keys: 0, sessions: 0, timerArmed: false });
    const health = await fetch(`${server.httpUrl}/healthz`).catch(() => null);
    expect(health).toBeNull();
  });
});
