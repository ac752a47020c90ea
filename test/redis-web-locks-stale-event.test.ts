import { afterEach, describe, expect, it } from 'vitest';
import { LockClient, type Lock, type LockEvent } from '@lockwire/client';
import { createLockServer, type LockServer } from '@lockwire/server';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { useRedisStores } from '../server/test/redis-harness.js';

const stores = useRedisStores('wlstale');
const clients: LockClient[] = [];
const servers: LockServer[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function within<T>(promise: Promise<T>, ms = 3000, what = 'it'): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function connect(url: string) {
  const c = await LockClient.connect(url, { reconnect: false });
  clients.push(c);
  return c;
}

describe('client.locks on two Redis nodes: an event older than a status', () => {
  it('does not grant a shared request made after another client queued a writer, on the event of an earlier writer leaving', async () => {
    const namespace = stores.namespace();
    const proxy = await stores.proxy();
    const node = async (url: string) => {
      const server = await createLockServer({ port: 0, heartbeatInterval: 0, store: createRedisStore({ url, namespace }) });
      servers.push(server);
      return server;
    };
    const n1 = await node(proxy.url); // alice's node: its pub/sub can be slowed
    const n2 = await node(stores.redis.url);
    const alice = await connect(n1.url);
    const bob = await connect(n2.url);
    const dave = await connect(n2.url);
    const carol = await connect(n2.url);
    const name = 'stale';
    let first!: (l: Lock | null) => void;
    const firstLock = new Promise<Lock | null>((r) => (first = r));
    void alice.locks
      .request(name, { mode: 'shared' }, (l) => {
        first(l);
        return new Promise(() => undefined);
      })
      .catch(() => undefined);
    await within(firstLock, 3000, 'alice first read');
    const events: LockEvent[] = [];
    let onEvent = () => {};
    await carol.watch(name, (e) => {
      events.push(e);
      onEvent();
    });
    const saw = (type: string, session: string) =>
      within(
        new Promise<void>((resolve) => {
          onEvent = () => {
            if (events.some((e) => e.event === type && e.session === session)) resolve();
          };
          onEvent();
        }),
        3000,
        `${type} of ${session}`,
      );
    const bobController = new AbortController();
    void bob.locks.request(name, { signal: bobController.signal }, () => 'bob').catch(() => undefined);
    await saw('queued', bob.session);
    // Alice's S1 waits behind bob's write; her client watches the name.
    const s1Controller = new AbortController();
    const s1 = alice.locks.request(name, { mode: 'shared', signal: s1Controller.signal }, () => 's1').catch((e: unknown) => e);
    await alice.ping();
    await alice.ping();

    // From now on alice's node hears other nodes' events late (order kept).
    proxy.delay(400);
    bobController.abort(new Error('bob gave up'));
    await saw('dequeued', bob.session);
    void dave.locks.request(name, () => 'dave').catch(() => undefined);
    await saw('queued', dave.session);
    // S2 is made after dave's write queued: it must wait behind it.
    let s2Granted = false;
    const s2 = alice.locks.request(name, { mode: 'shared' }, () => {
      s2Granted = true;
      return 's2';
    });
    s2.catch(() => undefined);
    s1Controller.abort(new Error('s1 gave up'));
    await within(s1, 3000, 's1 abort');
    // A ping on a Redis node is answered after what the node was sent before it: both late events are in.
    await within(alice.ping(), 3000, 'ping');
    await within(alice.ping(), 3000, 'ping');
    const status = await carol.status(name);
    // Dave, queued before S2 was made, still waits; S2 must not share alice's hold ahead of him.
    expect(status.queue.map((w) => w.session)).toEqual([dave.session]);
    expect(s2Granted).toBe(false);
  });
});
