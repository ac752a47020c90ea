import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { GraceRegistry, sameSecret } from '../src/grace-registry.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer } from '../src/server.js';
import type { LockStore } from '../src/store.js';
import { describeGraceLosses } from './grace-loss-scenarios.js';
import { describeGrace } from './grace-scenarios.js';
import { RawClient, sessionLog, upgradeStatusLine } from './server-harness.js';

describeGrace('memory store', async (clock) => createMemoryStore({ clock }));
describeGraceLosses('memory store', async (clock) => createMemoryStore({ clock }));

describe('session grace on the memory store', () => {
  it('ends sessions in grace when the server closes, leaving no lock and no timer', async () => {
    const clock = createManualClock(Date.now());
    const store = createMemoryStore({ clock });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, store, sessionGrace: 60_000 });
    const { client } = await RawClient.connect(server.url);
    await client.request({ op: 'acquire', id: 1, key: 'k' });
    await client.close();
    expect(await store.list('', 10, null)).toMatchObject({ locks: [{ key: 'k' }] });
    await server.close();
    expect(store.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0, timerArmed: false });
    expect(clock.pending()).toBe(0);
  });

  it('keeps the first deadline when a resume fails on a store error (refused 503): the grace does not start again', async () => {
    const clock = createManualClock(Date.now());
    const inner = createMemoryStore({ clock });
    let storeDown = false;
    // The store answers everything but status, which the resume needs, while it is down.
    const store = new Proxy(inner, {
      get(target, property, receiver) {
        if (property === 'status') {
          return (...args: Parameters<LockStore['status']>) =>
            storeDown ? Promise.reject(new Error('store down')) : target.status(...args);
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const sessions = sessionLog();
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, store, sessionGrace: 10_000, logger: sessions.logger });
    const clients: RawClient[] = [];
    try {
      const a = await RawClient.connect(server.url);
      const b = await RawClient.connect(server.url);
      clients.push(a.client, b.client);
      await a.client.request({ op: 'acquire', id: 1, key: 'k' });
      b.client.send({ op: 'acquire', id: 1, key: 'k' });
      await b.client.next((f) => f.type === 'queued', 'the queued acquire');
      a.client.ws.terminate();
      await sessions.closed(1, 'the server to see the drop');
      expect(server.sessionCount()).toBe(1);
      clock.advance(9_000);
      storeDown = true;
      const query = `?session=${String(a.welcome.session)}&resume=${String(a.welcome.resume)}`;
      expect(await upgradeStatusLine(server.port, `/v1${query}`)).toBe('HTTP/1.1 503 Service Unavailable');
      storeDown = false;
      clock.advance(999);
      const status = await b.client.request({ op: 'status', id: 2, key: 'k' });
      expect(status).toMatchObject({ holders: [{ session: a.welcome.session }] });
      clock.advance(1);
      expect(await b.client.reply(1)).toMatchObject({ ok: true, acquired: true });
    } finally {
      for (const client of clients) client.ws.terminate();
      await server.close();
    }
  });

  it('gives a session back to its grace when the handshake of its resume is refused', async () => {
    const clock = createManualClock(Date.now());
    const sessions = sessionLog();
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, store: createMemoryStore({ clock }), sessionGrace: 10_000, logger: sessions.logger });
    const clients: RawClient[] = [];
    try {
      const a = await RawClient.connect(server.url);
      clients.push(a.client);
      await a.client.request({ op: 'acquire', id: 1, key: 'k' });
      a.client.ws.terminate();
      await sessions.closed(1, 'the server to see the drop');
      const query = `?session=${String(a.welcome.session)}&resume=${String(a.welcome.resume)}`;
      // The resume is claimed before the WebSocket handshake, which then fails on the malformed key.
      expect(await upgradeStatusLine(server.port, `/v1${query}`, 'not-a-key')).toBe('HTTP/1.1 400 Bad Request');
      const again = await RawClient.connect(server.url + query);
      clients.push(again.client);
      expect(again.welcome).toMatchObject({ session: a.welcome.session, resumed: true, held: [{ key: 'k' }] });
    } finally {
      for (const client of clients) client.ws.terminate();
      await server.close();
    }
  });

  it('sends no grace fields and keeps no lock after a disconnect with grace off', async () => {
    const clock = createManualClock(Date.now());
    const store = createMemoryStore({ clock });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, clock, store });
    try {
      const { client, welcome } = await RawClient.connect(server.url);
      expect(Object.keys(welcome)).toEqual(['type', 'session', 'protocol', 'server', 'limits']);
      await client.request({ op: 'acquire', id: 1, key: 'k' });
      await client.close();
      const { welcome: again } = await RawClient.connect(`${server.url}?session=${String(welcome.session)}&resume=x`);
      expect(again.session).not.toBe(welcome.session);
      expect(store.inspect().keys).toBe(0);
    } finally {
      await server.close();
    }
  });
});

describe('grace registry', () => {
  it('compares secrets of any length without throwing', () => {
    expect(sameSecret('abc', 'abc')).toBe(true);
    expect(sameSecret('abc', 'abd')).toBe(false);
    expect(sameSecret('', 'a-much-longer-secret')).toBe(false);
  });

  it('claims a session once, with the right secret and user, before its timer fires', () => {
    const clock = createManualClock(0);
    const expired: string[] = [];
    const registry = new GraceRegistry({ grace: 100, clock, expired: (session) => expired.push(session) });
    registry.hold({ session: 's', secret: 'sec', user: 'ana', keys: new Set(['k']) });
    expect(registry.claim('s', 'sec', 'bo')).toBeNull();
    expect(registry.claim('s', 'bad', 'ana')).toBeNull();
    expect(registry.claim('s', 'sec', 'ana')?.detached.keys).toEqual(new Set(['k']));
    expect(registry.claim('s', 'sec', 'ana')).toBeNull();
    registry.hold({ session: 't', secret: 'sec', user: null, keys: new Set() });
    clock.advance(100);
    expect(expired).toEqual(['t']);
    expect(registry.size).toBe(0);
  });

  it('puts a claimed session back until the deadline it was claimed with, and ends it at once past it', () => {
    const clock = createManualClock(0);
    const expired: string[] = [];
    const registry = new GraceRegistry({ grace: 100, clock, expired: (session) => expired.push(session) });
    registry.hold({ session: 's', secret: 'sec', user: null, keys: new Set() });
    clock.advance(60);
    const claimed = registry.claim('s', 'sec', null);
    expect(claimed?.deadline).toBe(100);
    if (!claimed) throw new Error('the session was not claimed');
    registry.hold(claimed.detached, claimed.cancelling, claimed.deadline);
    clock.advance(39);
    expect(expired).toEqual([]);
    clock.advance(1);
    expect(expired).toEqual(['s']);
    registry.hold(claimed.detached, claimed.cancelling, clock.now());
    expect(expired).toEqual(['s', 's']);
    expect(registry.size).toBe(0);
    expect(clock.pending()).toBe(0);
  });

  it('keeps the losses of a session in grace through a claim and a put-back, and counts and ends only the keys still held', () => {
    const clock = createManualClock(0);
    const expired: Array<[string, string[]]> = [];
    const registry = new GraceRegistry({ grace: 100, clock, expired: (session, keys) => expired.push([session, [...keys]]) });
    registry.hold({ session: 's', secret: 'sec', user: null, keys: new Set(['a', 'b', 'c']) });
    expect(registry.heldCount).toBe(3);
    expect(registry.lost('s', { key: 'b', token: 7, reason: 'stolen' })).toBe(true);
    expect(registry.lost('nobody', { key: 'b', token: 8, reason: 'stolen' })).toBe(false);
    expect(registry.heldCount).toBe(2);
    const claimed = registry.claim('s', 'sec', null);
    if (!claimed) throw new Error('the session was not claimed');
    expect([...claimed.losses.values()]).toEqual([{ key: 'b', token: 7, reason: 'stolen' }]);
    registry.hold(claimed.detached, claimed.cancelling, claimed.deadline, claimed.losses);
    registry.lost('s', { key: 'a', token: 5, reason: 'expired' });
    expect(registry.heldCount).toBe(1);
    clock.advance(100);
    expect(expired).toEqual([['s', ['c']]]);
    expect(registry.heldCount).toBe(0);
  });
});
