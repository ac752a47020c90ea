import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient, type ListResult, type LockStatus } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { defaultResponse, startFakeServer } from './fake-server.js';
import { fastReconnect, nextEvent, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let proxy: TcpProxy;
let observer: LockClient;

beforeEach(async () => {
  h = await startHarness();
  proxy = await startTcpProxy(h.server.port);
  observer = await h.connect();
});
afterEach(async () => {
  await h.close();
  await proxy.close();
});

/** The keys of a snapshot, and whether it was truncated. */
function shape(snapshot: ListResult): { keys: string[]; truncated: boolean } {
  return { keys: snapshot.locks.map((lock) => lock.key), truncated: snapshot.truncated };
}

describe('the snapshot of a resync after a reconnect', () => {
  it("keeps each watch within its own limit, in key order, truncated when keys were left out", async () => {
    const client = await h.connectTo(proxy.url(h.server.url), { reconnect: fastReconnect });
    for (const key of ['s:3', 's:1', 's:2']) await observer.acquire(key);
    const resynced: ListResult[] = [];
    const one = await client.watch('s:', () => undefined, { limit: 1, onResync: (s) => resynced.push(s) });
    const two = await client.watch('s:', () => undefined, { limit: 2 });
    const all = await client.watch('s:', () => undefined);
    expect(shape(one.snapshot)).toEqual({ keys: ['s:1'], truncated: true });

    const reconnected = nextEvent(client, 'reconnect');
    proxy.cut();
    await reconnected;
    await client.ping();
    expect(shape(one.snapshot)).toEqual({ keys: ['s:1'], truncated: true });
    expect(resynced.map(shape)).toEqual([{ keys: ['s:1'], truncated: true }]);
    expect(shape(two.snapshot)).toEqual({ keys: ['s:1', 's:2'], truncated: true });
    expect(shape(all.snapshot)).toEqual({ keys: ['s:1', 's:2', 's:3'], truncated: false });
  });

  it('a snapshot the server truncated stays truncated for a watch that gets all of it', async () => {
    const client = await h.connectTo(proxy.url(h.server.url), { reconnect: fastReconnect });
    for (const key of ['t:1', 't:2', 't:3']) await observer.acquire(key);
    const one = await client.watch('t:', () => undefined, { limit: 1 });
    const two = await client.watch('t:', () => undefined, { limit: 2 });

    const reconnected = nextEvent(client, 'reconnect');
    proxy.cut();
    await reconnected;
    await client.ping();
    expect(shape(one.snapshot)).toEqual({ keys: ['t:1'], truncated: true });
    expect(shape(two.snapshot)).toEqual({ keys: ['t:1', 't:2'], truncated: true });
  });

  it('asks for the largest limit, counting a watch without one as the default 1000, which it is cut to', async () => {
    const many: LockStatus[] = Array.from({ length: 1200 }, (_, i) => ({
      key: `m:${String(i).padStart(4, '0')}`,
      locked: true,
      mode: 'exclusive',
      holders: [],
      queue: [],
    }));
    const fake = await startFakeServer({
      respond: (frame, connection) => {
        if (frame.op !== 'watch') return defaultResponse(frame);
        // The first connection's watches start empty; the re-watch gets what its limit allows.
        if (connection === fake.connections[0]) return { locks: [], truncated: false };
        const limit = typeof frame.limit === 'number' ? frame.limit : 1000;
        return { locks: many.slice(0, limit), truncated: limit < many.length };
      },
    });
    try {
      const client = await LockClient.connect(fake.url, { reconnect: fastReconnect });
      const byDefault = await client.watch('m:', () => undefined);
      const large = await client.watch('m:', () => undefined, { limit: 1500 });
      const reconnected = nextEvent(client, 'reconnect');
      (await fake.connection(0)).terminate();
      await reconnected;
      const second = await fake.connection(1);
      expect(await within(second.nextRequest('watch'))).toMatchObject({ prefix: 'm:', limit: 1500 });
      await client.ping();
      expect(large.snapshot.locks).toHaveLength(1200);
      expect(large.snapshot.truncated).toBe(false);
      expect(byDefault.snapshot.locks).toHaveLength(1000);
      expect(byDefault.snapshot.locks.at(-1)?.key).toBe('m:0999');
      expect(byDefault.snapshot.truncated).toBe(true);
      await client.close();
    } finally {
      await fake.close();
    }
  });
});
