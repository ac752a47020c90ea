import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { GraceRegistry, sameSecret } from '../src/grace.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer } from '../src/server.js';
import { describeGrace } from './grace-scenarios.js';
import { RawClient } from './server-harness.js';

describeGrace('memory store', async (clock) => createMemoryStore({ clock }));

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
});
