import type { Socket } from 'node:net';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LockServer } from '@lockwire/server';
import { encodeKey, keyNames } from '../server/src/redis/key-codec.js';
import { scripts } from '../server/src/redis/scripts.js';
import { RawClient, type Frame } from './helpers/raw-client.js';
import { startNodesAt } from './helpers/redis-nodes.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { startTapProxy, subscribes } from './helpers/tap-proxy.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

// A watcher's node loses its pub/sub connection while another node changes
// keys under the watched prefix. The watcher's node reaches Redis through a
// proxy that the test cuts (every connection reset, new ones refused) and
// restores; the other node talks to Redis directly. The node TTL is long
// enough that the break never makes the watcher's node give up its locks.

const NODE_TTL = 3000;
/** Bound on everything awaited after the break ends: the reconnect takes a few hundred ms. */
const AFTER_BREAK = 5000;

/** The fields of an event a test asserts (`at` is the node's clock). */
const shape = (frame: Frame) => {
  const { key, event, session, token, mode, meta, holders, waiters } = frame;
  return token === undefined
    ? { key, event, session, mode, meta, holders, waiters }
    : { key, event, session, token, mode, meta, holders, waiters };
};

/** A proxy to Redis that can silence its pub/sub connections (bytes from Redis dropped, nothing closed) and counts them. */
interface SilencingProxy {
  readonly url: string;
  /** Pub/sub connections made through the proxy so far (a reconnect makes one more). */
  subscriberConnections(): number;
  /** Drops, from now on, what Redis sends on the pub/sub connections open now: a half-open path. */
  silence(): void;
  close(): void;
}

async function startSilencingProxy(targetPort: number): Promise<SilencingProxy> {
  const subscribers = new Set<Socket>();
  const silenced = new Set<Socket>();
  let made = 0;
  const proxy = await startTapProxy(targetPort, ({ client, upstream }) => {
    client.on('data', (chunk: Buffer) => {
      if (!subscribers.has(client) && subscribes(chunk)) {
        subscribers.add(client);
        made += 1;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!silenced.has(client)) client.write(chunk);
    });
  });
  return {
    url: proxy.url,
    subscriberConnections: () => made,
    silence: () => {
      for (const socket of subscribers) silenced.add(socket);
    },
    close: () => proxy.close(),
  };
}

function removeFirst<T>(list: T[], match: (item: T) => boolean): void {
  const at = list.findIndex(match);
  if (at >= 0) list.splice(at, 1);
}

describe('Redis store: a watch stream catches up after its node missed steps', () => {
  let redis: RedisServer;
  let run = 0;
  let namespace = '';
  let servers: LockServer[] = [];
  let proxies: TcpProxy[] = [];
  let clients: RawClient[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.terminate();
    for (const proxy of proxies) proxy.resume();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });

  /** Node A (the watcher's) through a proxy, node B straight to Redis. */
  async function twoNodes(): Promise<{ a: LockServer; b: LockServer; proxy: TcpProxy }> {
    const proxy = await startTcpProxy({ targetPort: redis.port });
    proxies.push(proxy);
    return { ...(await nodesAt(`redis://127.0.0.1:${proxy.port}`)), proxy };
  }
  /** Node A reaching Redis at `viaUrl`, node B straight, in a namespace of their own. */
  async function nodesAt(viaUrl: string): Promise<{ a: LockServer; b: LockServer }> {
    namespace = `lwwr${process.pid}x${++run}`;
    const [a, b] = await startNodesAt([viaUrl, redis.url], { namespace, nodeTtl: NODE_TTL, commandTimeout: 300 }, servers);
    if (!a || !b) throw new Error('nodes');
    return { a, b };
  }
  async function connect(server: LockServer): Promise<RawClient> {
    const client = await RawClient.connect(server.url);
    clients.push(client);
    return client;
  }
  /** The events `watcher` received so far for `key`, as asserted. */
  const eventsOf = (watcher: RawClient, key: string) => watcher.received('event').filter((e) => e.key === key).map(shape);

  /**
   * `status` of `key` as a watcher's events draw it: holders and queue as
   * (session, token, mode, meta), from the snapshot's entry and every event since;
   * with `counts`, each event's counts must match the drawing.
   */
  function drawn(snapshot: Frame, events: Frame[], key: string, counts = true) {
    const entry = (snapshot.locks as Array<Record<string, unknown>>).find((l) => l.key === key);
    const holders = ((entry?.holders ?? []) as Array<Record<string, unknown>>).map((h) => ({ session: h.session, token: h.token, mode: h.mode, meta: h.meta }));
    const queue = ((entry?.queue ?? []) as Array<Record<string, unknown>>).map((w) => ({ session: w.session, mode: w.mode, meta: w.meta }));
    for (const e of events.filter((x) => x.key === key)) {
      if (e.event === 'acquired') {
        holders.push({ session: e.session, token: e.token, mode: e.mode, meta: e.meta });
        removeFirst(queue, (w) => w.session === e.session);
      } else if (e.event === 'queued') queue.push({ session: e.session, mode: e.mode, meta: e.meta });
      else if (e.event === 'dequeued') removeFirst(queue, (w) => w.session === e.session);
      else removeFirst(holders, (h) => h.session === e.session && h.token === e.token);
      if (counts) {
        expect(e.holders, `holders count of ${JSON.stringify(e)}`).toBe(holders.length);
        expect(e.waiters, `waiters count of ${JSON.stringify(e)}`).toBe(queue.length);
      }
    }
    return { holders, queue };
  }
  /** `status` of `key` in the same shape as `drawn`. */
  async function statusOf(client: RawClient, key: string) {
    const status = await client.request({ op: 'status', key });
    return {
      holders: (status.holders as Array<Record<string, unknown>>).map((h) => ({ session: h.session, token: h.token, mode: h.mode, meta: h.meta })),
      queue: (status.queue as Array<Record<string, unknown>>).map((w) => ({ session: w.session, mode: w.mode, meta: w.meta })),
    };
  }

  it('after its pub/sub connection is back, a watcher hears the acquire and the release made on another node during the break, with their counts', async () => {
    const { a, b, proxy } = await twoNodes();
    const watcher = await connect(a);
    const leaver = await connect(b);
    const taker = await connect(b);
    const held = await leaver.request({ op: 'acquire', key: 'doc:1', meta: { who: 'leaver' } });
    expect(held).toMatchObject({ acquired: true });
    const snapshot = await watcher.request({ op: 'watch', prefix: 'doc:' });
    expect(snapshot).toMatchObject({ ok: true, locks: [{ key: 'doc:1' }] });

    proxy.refuse();
    const taken = await taker.request({ op: 'acquire', key: 'doc:2', mode: 'shared' });
    expect(taken).toMatchObject({ acquired: true });
    expect(await leaver.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });
    proxy.resume();

    await watcher.nextEvent('doc:1', 'released', { timeout: AFTER_BREAK });
    await watcher.nextEvent('doc:2', 'acquired', { timeout: AFTER_BREAK });
    expect(eventsOf(watcher, 'doc:1')).toEqual([
      { key: 'doc:1', event: 'released', session: leaver.session, token: held.token, mode: 'exclusive', meta: { who: 'leaver' }, holders: 0, waiters: 0 },
    ]);
    expect(eventsOf(watcher, 'doc:2')).toEqual([
      { key: 'doc:2', event: 'acquired', session: taker.session, token: taken.token, mode: 'shared', meta: null, holders: 1, waiters: 0 },
    ]);
    const events = watcher.received('event');
    for (const key of ['doc:1', 'doc:2']) expect(drawn(snapshot, events, key)).toEqual(await statusOf(taker, key));
  });

  it('repairs a key whose queue moved during the break and that has no step afterwards: the old holder released, the cancelled waiter dequeued, the next one acquired', async () => {
    const { a, b, proxy } = await twoNodes();
    const watcher = await connect(a);
    const [holder, next, quitter] = [await connect(b), await connect(b), await connect(b)];
    const held = await holder.request({ op: 'acquire', key: 'doc:q' });
    expect(held).toMatchObject({ acquired: true });
    const nextId = next.id();
    next.send({ op: 'acquire', id: nextId, key: 'doc:q', meta: { n: 1 } });
    await next.next((m) => m.type === 'queued' && m.id === nextId);
    const quitterId = quitter.id();
    quitter.send({ op: 'acquire', id: quitterId, key: 'doc:q' });
    await quitter.next((m) => m.type === 'queued' && m.id === quitterId);
    const snapshot = await watcher.request({ op: 'watch', prefix: 'doc:' });
    expect(snapshot).toMatchObject({ locks: [{ key: 'doc:q', holders: [{ session: holder.session }], queue: [{ session: next.session }, { session: quitter.session }] }] });

    proxy.refuse();
    expect(await quitter.request({ op: 'cancel', target: quitterId })).toMatchObject({ ok: true, cancelled: true });
    expect(await holder.request({ op: 'release', key: 'doc:q' })).toMatchObject({ ok: true });
    const granted = await next.reply(nextId);
    expect(granted).toMatchObject({ acquired: true });
    proxy.resume();

    await watcher.nextEvent('doc:q', 'acquired', { timeout: AFTER_BREAK });
    expect(eventsOf(watcher, 'doc:q')).toEqual([
      { key: 'doc:q', event: 'released', session: holder.session, token: held.token, mode: 'exclusive', meta: null, holders: 0, waiters: 2 },
      { key: 'doc:q', event: 'dequeued', session: quitter.session, mode: 'exclusive', meta: null, holders: 0, waiters: 1 },
      { key: 'doc:q', event: 'acquired', session: next.session, token: granted.token, mode: 'exclusive', meta: { n: 1 }, holders: 1, waiters: 0 },
    ]);
    expect(drawn(snapshot, watcher.received('event'), 'doc:q')).toEqual(await statusOf(next, 'doc:q'));
  });

  it('drops the broadcast of a step the catch-up already showed when it arrives late, and streams the steps after it once', async () => {
    const { a, b, proxy } = await twoNodes();
    const admin = createClient({ url: redis.url });
    admin.on('error', () => {});
    await admin.connect();
    const listener = admin.duplicate();
    listener.on('error', () => {});
    await listener.connect();
    try {
      const captured: string[] = [];
      await listener.subscribe(`${namespace}:e`, (message) => captured.push(message));
      const watcher = await connect(a);
      const leaver = await connect(b);
      const taker = await connect(b);
      const held = await leaver.request({ op: 'acquire', key: 'doc:1' });
      const snapshot = await watcher.request({ op: 'watch', prefix: 'doc:' });
      expect(snapshot).toMatchObject({ locks: [{ key: 'doc:1' }] });
      const before = captured.length;

      proxy.refuse();
      const taken = await taker.request({ op: 'acquire', key: 'doc:2' });
      await leaver.request({ op: 'release', key: 'doc:1' });
      // Both steps' broadcasts reached the listener (its connection is direct); the ping orders after them.
      await admin.ping();
      await listener.ping();
      const missed = captured.slice(before);
      expect(missed).toHaveLength(2);
      proxy.resume();
      await watcher.nextEvent('doc:1', 'released', { timeout: AFTER_BREAK });
      await watcher.nextEvent('doc:2', 'acquired', { timeout: AFTER_BREAK });

      // The watcher's node may have caught up from a read before its subscriber was back (its
      // commands reconnect first): a step's event arriving shows the subscription is live again.
      await taker.request({ op: 'acquire', key: 'doc:live' });
      await watcher.nextEvent('doc:live', 'acquired', { timeout: AFTER_BREAK });
      // The same broadcasts again, as if they had been delayed past the catch-up's read, then a new step.
      for (const message of missed) expect(await admin.publish(`${namespace}:e`, message)).toBe(3);
      await taker.request({ op: 'release', key: 'doc:2' });
      await watcher.nextEvent('doc:2', 'released', { timeout: AFTER_BREAK });
      expect(eventsOf(watcher, 'doc:1')).toEqual([
        { key: 'doc:1', event: 'released', session: leaver.session, token: held.token, mode: 'exclusive', meta: null, holders: 0, waiters: 0 },
      ]);
      expect(eventsOf(watcher, 'doc:2')).toEqual([
        { key: 'doc:2', event: 'acquired', session: taker.session, token: taken.token, mode: 'exclusive', meta: null, holders: 1, waiters: 0 },
        { key: 'doc:2', event: 'released', session: taker.session, token: taken.token, mode: 'exclusive', meta: null, holders: 0, waiters: 0 },
      ]);
    } finally {
      listener.destroy();
      admin.destroy();
    }
  });

  it('repairs a key whose step the node never heard once the sequencer gives up waiting for it', async () => {
    const { a, b } = await twoNodes();
    const admin = createClient({ url: redis.url });
    admin.on('error', () => {});
    await admin.connect();
    try {
      const watcher = await connect(a);
      const [holder, next, later] = [await connect(b), await connect(b), await connect(b)];
      const held = await holder.request({ op: 'acquire', key: 'doc:g' });
      expect(held).toMatchObject({ acquired: true });
      const nextId = next.id();
      next.send({ op: 'acquire', id: nextId, key: 'doc:g' });
      await next.next((m) => m.type === 'queued' && m.id === nextId);
      const snapshot = await watcher.request({ op: 'watch', prefix: 'doc:' });
      expect(snapshot).toMatchObject({ locks: [{ key: 'doc:g', holders: [{ session: holder.session }], queue: [{ session: next.session }] }] });

      // A revoke whose messages go to another namespace's channels: no node hears it, as if
      // its broadcast were lost. The queue head is granted in the same step.
      const now = String(Date.now());
      const encoded = encodeKey('doc:g');
      await admin.sendCommand(['FCALL', scripts.revoke.fn, '5', ...keyNames(namespace).lockKeys(encoded), 'elsewhere', '1', now, encoded, `${namespace}lost`]);
      const granted = await statusOf(later, 'doc:g');
      expect(granted.holders.map((h) => h.session)).toEqual([next.session]);
      // The key's next step reaches the watcher's node without its predecessor.
      const laterId = later.id();
      later.send({ op: 'acquire', id: laterId, key: 'doc:g' });
      await later.next((m) => m.type === 'queued' && m.id === laterId, { timeout: AFTER_BREAK });

      await watcher.nextEvent('doc:g', 'acquired', { timeout: AFTER_BREAK });
      expect(eventsOf(watcher, 'doc:g')).toEqual([
        { key: 'doc:g', event: 'queued', session: later.session, mode: 'exclusive', meta: null, holders: 1, waiters: 1 },
        { key: 'doc:g', event: 'released', session: holder.session, token: held.token, mode: 'exclusive', meta: null, holders: 0, waiters: 2 },
        { key: 'doc:g', event: 'acquired', session: next.session, token: granted.holders[0]?.token, mode: 'exclusive', meta: null, holders: 1, waiters: 1 },
      ]);
      expect(drawn(snapshot, watcher.received('event'), 'doc:g', false)).toEqual(await statusOf(later, 'doc:g'));
    } finally {
      admin.destroy();
    }
  });

  it('catches a watcher up on a pub/sub path gone silent, once a heartbeat does not come back and before the connection is replaced', async () => {
    const silent = await startSilencingProxy(redis.port);
    try {
      const { a, b } = await nodesAt(silent.url);
      const watcher = await connect(a);
      const leaver = await connect(b);
      const taker = await connect(b);
      const held = await leaver.request({ op: 'acquire', key: 'doc:1' });
      expect(await watcher.request({ op: 'watch', prefix: 'doc:' })).toMatchObject({ locks: [{ key: 'doc:1' }] });
      expect(silent.subscriberConnections()).toBe(1);

      silent.silence();
      const taken = await taker.request({ op: 'acquire', key: 'doc:2' });
      await leaver.request({ op: 'release', key: 'doc:1' });
      // Heartbeats go out every third of the node TTL; the second one missed starts the catch-up.
      // The silent connection is replaced only after a whole node TTL without a byte.
      await watcher.nextEvent('doc:2', 'acquired', { timeout: NODE_TTL });
      expect(silent.subscriberConnections()).toBe(1);
      expect(eventsOf(watcher, 'doc:1')).toEqual([
        { key: 'doc:1', event: 'released', session: leaver.session, token: held.token, mode: 'exclusive', meta: null, holders: 0, waiters: 0 },
      ]);
      expect(eventsOf(watcher, 'doc:2')).toEqual([
        { key: 'doc:2', event: 'acquired', session: taker.session, token: taken.token, mode: 'exclusive', meta: null, holders: 1, waiters: 0 },
      ]);
    } finally {
      for (const client of clients.splice(0)) client.terminate();
      await Promise.all(servers.splice(0).map((s) => s.close()));
      silent.close();
    }
  });

  it('tells two watches opened at the same time on one node of a hold from before both that was released during a pub/sub break', async () => {
    const { a, b, proxy } = await twoNodes();
    const w1 = await connect(a);
    const w2 = await connect(a);
    const leaver = await connect(b);
    const held = await leaver.request({ op: 'acquire', key: 'doc:1' });
    expect(held).toMatchObject({ acquired: true });
    const [s1, s2] = await Promise.all([w1.request({ op: 'watch', prefix: 'doc:' }), w2.request({ op: 'watch', prefix: 'doc:' })]);
    expect(s1).toMatchObject({ locks: [{ key: 'doc:1' }] });
    expect(s2).toMatchObject({ locks: [{ key: 'doc:1' }] });

    proxy.refuse();
    expect(await leaver.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });
    proxy.resume();

    await w1.nextEvent('doc:1', 'released', { timeout: AFTER_BREAK });
    await w2.nextEvent('doc:1', 'released', { timeout: AFTER_BREAK });
  });

  it('tells a watch of a key past another watch\'s truncated snapshot of the release made during a pub/sub break', async () => {
    const { a, b, proxy } = await twoNodes();
    const wide = await connect(a);
    const narrow = await connect(a);
    const leaver = await connect(b);
    expect(await leaver.request({ op: 'acquire', key: 'doc:1' })).toMatchObject({ acquired: true });
    expect(await leaver.request({ op: 'acquire', key: 'doc:2' })).toMatchObject({ acquired: true });
    expect(await wide.request({ op: 'watch', prefix: 'doc:', limit: 1 })).toMatchObject({ truncated: true, locks: [{ key: 'doc:1' }] });
    expect(await narrow.request({ op: 'watch', prefix: 'doc:2' })).toMatchObject({ locks: [{ key: 'doc:2' }] });

    proxy.refuse();
    expect(await leaver.request({ op: 'release', key: 'doc:2' })).toMatchObject({ ok: true });
    proxy.resume();

    await narrow.nextEvent('doc:2', 'released', { timeout: AFTER_BREAK });
  });

  it('catches a watch opened while its node\'s pub/sub path is silent up from its own snapshot, without the steps that snapshot already showed', async () => {
    const silent = await startSilencingProxy(redis.port);
    try {
      const { a, b } = await nodesAt(silent.url);
      const old = await connect(a);
      const fresh = await connect(a);
      const [h1, h2, h3] = [await connect(b), await connect(b), await connect(b)];
      expect(await h1.request({ op: 'acquire', key: 'doc:1' })).toMatchObject({ acquired: true });
      expect(await old.request({ op: 'watch', prefix: 'doc:' })).toMatchObject({ locks: [{ key: 'doc:1' }] });

      silent.silence();
      await h1.request({ op: 'release', key: 'doc:1' });
      const taken = await h2.request({ op: 'acquire', key: 'doc:1' });
      expect(taken).toMatchObject({ acquired: true });
      const snapshot = await fresh.request({ op: 'watch', prefix: 'doc:' });
      expect(snapshot).toMatchObject({ locks: [{ key: 'doc:1', holders: [{ session: h2.session }] }] });
      const queuedId = h3.id();
      h3.send({ op: 'acquire', id: queuedId, key: 'doc:1' });
      await h3.next((m) => m.type === 'queued' && m.id === queuedId);

      // The old watcher catches up once a heartbeat does not come back.
      await old.nextEvent('doc:1', 'queued', { timeout: NODE_TTL });
      await fresh.nextEvent('doc:1', 'queued', { timeout: NODE_TTL });
      expect(eventsOf(fresh, 'doc:1')).toEqual([
        { key: 'doc:1', event: 'queued', session: h3.session, mode: 'exclusive', meta: null, holders: 1, waiters: 1 },
      ]);
    } finally {
      for (const client of clients.splice(0)) client.terminate();
      await Promise.all(servers.splice(0).map((s) => s.close()));
      silent.close();
    }
  });

  it('sends a session whose two watches were shown different states of a key each catch-up event once, the one both need only once', async () => {
    const silent = await startSilencingProxy(redis.port);
    try {
      const { a, b } = await nodesAt(silent.url);
      const watcher = await connect(a);
      const [h1, h2, h3] = [await connect(b), await connect(b), await connect(b)];
      const held = await h1.request({ op: 'acquire', key: 'doc:1' });
      expect(await watcher.request({ op: 'watch', prefix: 'doc:' })).toMatchObject({ locks: [{ key: 'doc:1' }] });

      silent.silence();
      await h1.request({ op: 'release', key: 'doc:1' });
      const taken = await h2.request({ op: 'acquire', key: 'doc:1' });
      expect(await watcher.request({ op: 'watch', prefix: 'doc:1' })).toMatchObject({ locks: [{ key: 'doc:1', holders: [{ session: h2.session }] }] });
      const queuedId = h3.id();
      h3.send({ op: 'acquire', id: queuedId, key: 'doc:1' });
      await h3.next((m) => m.type === 'queued' && m.id === queuedId);

      await watcher.nextEvent('doc:1', 'queued', { timeout: NODE_TTL });
      // A step after the catch-up: its event shows the catch-up's events have all been sent.
      await h2.request({ op: 'release', key: 'doc:1' });
      await watcher.next((m) => m.type === 'event' && m.key === 'doc:1' && m.event === 'acquired' && m.session === h3.session, { timeout: NODE_TTL });
      expect(eventsOf(watcher, 'doc:1').slice(0, 3)).toEqual([
        { key: 'doc:1', event: 'released', session: h1.session, token: held.token, mode: 'exclusive', meta: null, holders: 0, waiters: 0 },
        { key: 'doc:1', event: 'acquired', session: h2.session, token: taken.token, mode: 'exclusive', meta: null, holders: 1, waiters: 0 },
        { key: 'doc:1', event: 'queued', session: h3.session, mode: 'exclusive', meta: null, holders: 1, waiters: 1 },
      ]);
      expect(eventsOf(watcher, 'doc:1').filter((e) => e.event === 'queued')).toHaveLength(1);
    } finally {
      for (const client of clients.splice(0)) client.terminate();
      await Promise.all(servers.splice(0).map((s) => s.close()));
      silent.close();
    }
  });
});
