import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, systemClock, type LockServer } from '@lockwire/server';
import { keyNames } from '../server/src/redis/key-codec.js';
import { connectRedis, type RedisLink } from '../server/src/redis/redis-link.js';
import type { StoreContext } from '../server/src/redis/store-context.js';
import { TableReader } from '../server/src/redis/table-reader.js';
import { RawClient, type Frame } from './helpers/raw-client.js';
import { startNodesAt } from './helpers/redis-nodes.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { startTapProxy, subscribes } from './helpers/tap-proxy.js';

// A `list` or a watch's snapshot reads the table in steps: a SCAN for the
// locked keys, then one status per key. Other nodes change keys in between.
// The node that reads reaches Redis through a proxy that stops its command
// connection at its next SCAN, either before the SCAN reaches Redis or
// before its reply comes back, while the test makes a change on another
// node; the proxy can also hold back what Redis sends on the node's pub/sub
// connection (a connection lagging the others). The other nodes talk to
// Redis directly.

/** Which way a stopped connection holds its bytes: its SCAN going up, or the SCAN's reply coming back. */
type Stop = 'request' | 'reply';

/** A proxy to Redis that can stop a connection at its next SCAN, or hold back its pub/sub connections, until the test lets them go. */
interface ScanGate {
  readonly url: string;
  /** Stops the next connection that sends a SCAN, `stop` way; resolves once the SCAN went by. */
  stopAtScan(stop: Stop): Promise<void>;
  /** Delivers what the stopped connection held, in order, and carries its bytes again. */
  open(): void;
  /** Holds, from now on, what Redis sends on the pub/sub connections open now. */
  holdPubSub(): void;
  /** Delivers what the pub/sub connections held, in order, and carries their bytes again. */
  releasePubSub(): void;
  /** Resolves when a connection next sends Redis bytes holding `text`. */
  sent(text: string): Promise<void>;
  close(): void;
}

/** One connection through the gate, and what it holds each way. */
interface Link {
  up: Socket;
  down: Socket;
  pubSub: boolean;
  /** Bytes held going to Redis or coming back; null while they flow. */
  heldUp: Buffer[] | null;
  heldDown: Buffer[] | null;
}

async function startScanGate(targetPort: number): Promise<ScanGate> {
  const links = new Set<Link>();
  let armed: { stop: Stop; caught: () => void } | null = null;
  let stopped: Link | null = null;
  const watches = new Set<{ text: string; seen: () => void }>();
  const flush = (link: Link) => {
    const { heldUp, heldDown } = link;
    link.heldUp = null;
    link.heldDown = null;
    for (const chunk of heldUp ?? []) link.up.write(chunk);
    for (const chunk of heldDown ?? []) link.down.write(chunk);
  };
  const proxy = await startTapProxy(targetPort, ({ client, upstream }) => {
    const link: Link = { up: upstream, down: client, pubSub: false, heldUp: null, heldDown: null };
    links.add(link);
    client.on('data', (chunk: Buffer) => {
      if (subscribes(chunk)) link.pubSub = true;
      for (const watch of [...watches]) {
        if (!chunk.includes(watch.text)) continue;
        watches.delete(watch);
        watch.seen();
      }
      // A RESP command name travels between CRLFs; no key or value of these tests is `SCAN`.
      if (armed && chunk.includes('\r\nSCAN\r\n')) {
        const { stop, caught } = armed;
        armed = null;
        stopped = link;
        if (stop === 'request') link.heldUp = [];
        else link.heldDown = [];
        caught();
      }
      if (link.heldUp) link.heldUp.push(chunk);
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (link.heldDown) link.heldDown.push(chunk);
      else client.write(chunk);
    });
    client.on('close', () => links.delete(link));
  });
  return {
    url: proxy.url,
    stopAtScan: (stop) => new Promise<void>((caught) => (armed = { stop, caught })),
    open: () => {
      if (stopped) flush(stopped);
      stopped = null;
    },
    holdPubSub: () => {
      for (const link of links) if (link.pubSub) link.heldDown ??= [];
    },
    releasePubSub: () => {
      for (const link of links) if (link.pubSub) flush(link);
    },
    sent: (text) => new Promise<void>((seen) => watches.add({ text, seen })),
    close: () => proxy.close(),
  };
}

/** The fields of an event a test asserts (`at` is the node's clock). */
const shape = (frame: Frame) => {
  const { key, event, session, token, holders, waiters } = frame;
  return token === undefined ? { key, event, session, holders, waiters } : { key, event, session, token, holders, waiters };
};

describe('Redis store: list and a watch snapshot read while other nodes change keys', () => {
  let redis: RedisServer;
  let run = 0;
  let servers: LockServer[] = [];
  let gates: ScanGate[] = [];
  let clients: RawClient[] = [];
  let links: RedisLink[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    for (const gate of gates) {
      gate.open();
      gate.releasePubSub();
    }
    for (const client of clients.splice(0)) client.terminate();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await Promise.all(links.splice(0).map((l) => l.close()));
    for (const gate of gates.splice(0)) gate.close();
  });

  /** The reading node (through a gate) and another node straight to Redis, in a namespace of their own. */
  async function nodes(): Promise<{ reader: LockServer; other: LockServer; gate: ScanGate; namespace: string }> {
    const gate = await startScanGate(redis.port);
    gates.push(gate);
    const namespace = `lwlw${process.pid}x${++run}`;
    const [reader, other] = await startNodesAt([gate.url, redis.url], { namespace, nodeTtl: 3000 }, servers);
    if (!reader || !other) throw new Error('nodes');
    return { reader, other, gate, namespace };
  }
  async function connect(server: LockServer): Promise<RawClient> {
    const client = await RawClient.connect(server.url);
    clients.push(client);
    return client;
  }
  /** The events `watcher` received for `key` after its watch's reply `snapshot`, as asserted. */
  const eventsAfter = (watcher: RawClient, snapshot: Frame, key: string) =>
    watcher.messages.filter((m) => m.type === 'event' && m.key === key && watcher.indexOf(m) > watcher.indexOf(snapshot)).map(shape);
  const keysOf = (reply: Frame) => (reply.locks as Array<{ key: string }>).map((l) => l.key);

  it('a watch opened while another node releases a key before its SCAN streams no event of that release', async () => {
    const { reader, other, gate } = await nodes();
    const holder = await connect(other);
    const taker = await connect(other);
    const observer = await connect(reader);
    const watcher = await connect(reader);
    expect(await holder.request({ op: 'acquire', key: 'doc:1' })).toMatchObject({ acquired: true });
    await observer.request({ op: 'watch', prefix: 'doc:' });

    const caught = gate.stopAtScan('request');
    const id = watcher.id();
    watcher.send({ op: 'watch', id, prefix: 'doc:' });
    await caught;
    expect(await holder.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });
    // The reading node heard the release while its snapshot waits for the SCAN, which then finds the key free.
    await observer.nextEvent('doc:1', 'released');
    gate.open();
    const snapshot = await watcher.reply(id);
    expect(snapshot).toMatchObject({ ok: true, locks: [], truncated: false });

    const taken = await taker.request({ op: 'acquire', key: 'doc:1' });
    await watcher.nextEvent('doc:1', 'acquired');
    expect(eventsAfter(watcher, snapshot, 'doc:1')).toEqual([
      { key: 'doc:1', event: 'acquired', session: taker.session, token: taken.token, holders: 1, waiters: 0 },
    ]);
  });

  it('a watch opened while another node releases a key before its SCAN streams no event of that release when the broadcast comes after the SCAN reply', async () => {
    const { reader, other, gate } = await nodes();
    const holder = await connect(other);
    const taker = await connect(other);
    const watcher = await connect(reader);
    expect(await holder.request({ op: 'acquire', key: 'doc:1' })).toMatchObject({ acquired: true });

    const caught = gate.stopAtScan('request');
    const id = watcher.id();
    watcher.send({ op: 'watch', id, prefix: 'doc:' });
    await caught;
    // The release's broadcast waits in the proxy: the reading node's pub/sub connection lags.
    gate.holdPubSub();
    expect(await holder.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });
    const replied = watcher.reply(id);
    // The SCAN finds the key free. The node then answers the watch, or first publishes a
    // barrier to itself (which comes back behind the broadcast): the lag ends either way.
    const barrier = gate.sent('\r\nsync ');
    gate.open();
    await Promise.race([replied, barrier]);
    gate.releasePubSub();
    const snapshot = await replied;
    expect(snapshot).toMatchObject({ ok: true, locks: [], truncated: false });

    const taken = await taker.request({ op: 'acquire', key: 'doc:1' });
    await watcher.nextEvent('doc:1', 'acquired');
    expect(eventsAfter(watcher, snapshot, 'doc:1')).toEqual([
      { key: 'doc:1', event: 'acquired', session: taker.session, token: taken.token, holders: 1, waiters: 0 },
    ]);
  });

  it('a watch with a limit streams no event of a step made before its SCAN on a locked key past the limit', async () => {
    const { reader, other, gate } = await nodes();
    const holder = await connect(other);
    const waiter = await connect(other);
    const observer = await connect(reader);
    const watcher = await connect(reader);
    for (const key of ['doc:1', 'doc:2']) expect(await holder.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
    await observer.request({ op: 'watch', prefix: 'doc:' });

    const caught = gate.stopAtScan('request');
    const id = watcher.id();
    watcher.send({ op: 'watch', id, prefix: 'doc:', limit: 1 });
    await caught;
    const queuedId = waiter.id();
    waiter.send({ op: 'acquire', id: queuedId, key: 'doc:2' });
    await waiter.next((m) => m.type === 'queued' && m.id === queuedId);
    await observer.nextEvent('doc:2', 'queued');
    gate.open();
    const snapshot = await watcher.reply(id);
    expect(keysOf(snapshot)).toEqual(['doc:1']);
    expect(snapshot.truncated).toBe(true);

    expect(await waiter.request({ op: 'cancel', target: queuedId })).toMatchObject({ ok: true, cancelled: true });
    await watcher.nextEvent('doc:2', 'dequeued');
    expect(eventsAfter(watcher, snapshot, 'doc:2')).toEqual([{ key: 'doc:2', event: 'dequeued', session: waiter.session, holders: 1, waiters: 0 }]);
  });

  it('a key acquired on another node after the SCAN passed it, heard while the snapshot read, is shown in the snapshot in its place and its acquire is not streamed', async () => {
    const { reader, other, gate } = await nodes();
    const holder = await connect(other);
    const taker = await connect(other);
    const observer = await connect(reader);
    const watcher = await connect(reader);
    const kept = await holder.request({ op: 'acquire', key: 'doc:2' });
    expect(kept).toMatchObject({ acquired: true });
    await observer.request({ op: 'watch', prefix: 'doc:' });

    const caught = gate.stopAtScan('reply');
    const id = watcher.id();
    watcher.send({ op: 'watch', id, prefix: 'doc:', limit: 1 });
    await caught;
    const taken = await taker.request({ op: 'acquire', key: 'doc:1' });
    expect(taken).toMatchObject({ acquired: true });
    await observer.nextEvent('doc:1', 'acquired');
    gate.open();
    const snapshot = await watcher.reply(id);
    // doc:1 comes first in key order, so doc:2 is now past the limit.
    expect(snapshot).toMatchObject({ ok: true, locks: [{ key: 'doc:1', holders: [{ session: taker.session, token: taken.token }] }], truncated: true });

    expect(await taker.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });
    expect(await holder.request({ op: 'release', key: 'doc:2' })).toMatchObject({ ok: true });
    await watcher.nextEvent('doc:2', 'released');
    expect(eventsAfter(watcher, snapshot, 'doc:1')).toEqual([
      { key: 'doc:1', event: 'released', session: taker.session, token: taken.token, holders: 0, waiters: 0 },
    ]);
    expect(eventsAfter(watcher, snapshot, 'doc:2')).toEqual([
      { key: 'doc:2', event: 'released', session: holder.session, token: kept.token, holders: 0, waiters: 0 },
    ]);
  });

  it.each(['list', 'watch'] as const)(
    '%s with a limit answers that many locked keys when one its SCAN found is released before its read, and says truncated only while another locked key remains',
    async (op) => {
      const { reader, other, gate } = await nodes();
      const holder = await connect(other);
      const asker = await connect(reader);
      for (const key of ['l:1', 'l:2', 'l:3', 'l:4', 'l:5']) expect(await holder.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
      /** Asks with limit 3; `key` is released on the other node after the SCAN ran, before its reply comes back. */
      const askReleasing = async (key: string) => {
        const caught = gate.stopAtScan('reply');
        const id = asker.id();
        asker.send({ op, id, prefix: 'l:', limit: 3 });
        await caught;
        expect(await holder.request({ op: 'release', key })).toMatchObject({ ok: true });
        gate.open();
        const reply = await asker.reply(id);
        if (op === 'watch') await asker.request({ op: 'unwatch', prefix: 'l:' });
        return reply;
      };

      const first = await askReleasing('l:2');
      expect(keysOf(first)).toEqual(['l:1', 'l:3', 'l:4']);
      expect(first.truncated).toBe(true);
      const second = await askReleasing('l:3');
      expect(keysOf(second)).toEqual(['l:1', 'l:4', 'l:5']);
      expect(second.truncated).toBe(false);
    },
  );

  it('a watch catch-up reads as many locked keys of a prefix as its limit when one its SCAN found is released before its read', async () => {
    const { other, namespace } = await nodes();
    const holder = await connect(other);
    for (const key of ['l:1', 'l:2', 'l:3', 'l:4', 'l:5']) expect(await holder.request({ op: 'acquire', key })).toMatchObject({ acquired: true });
    const link = await connectRedis({ url: redis.url, cluster: false, commandTimeout: 2000, reconnectDelay: 100 });
    links.push(link);
    let afterScan: (() => Promise<unknown>) | null = () => holder.request({ op: 'release', key: 'l:2' });
    // The reader's SCAN answers, then l:2 is released on the other node, then the reader reads statuses.
    const releasingAfterScan: RedisLink = {
      ...link,
      shards: async () =>
        (await link.shards()).map((shard) => ({
          address: shard.address,
          command: async (args: string[]) => {
            const reply = await shard.command(args);
            const then = args[0] === 'SCAN' ? afterScan : null;
            afterScan = null;
            await then?.();
            return reply;
          },
        })),
    };
    const ctx: StoreContext = {
      clock: systemClock,
      logger: silentLogger,
      limits: { maxLocksPerSession: 100, maxWaitersPerKey: 100 },
      names: keyNames(namespace),
      namespace,
      link: releasingAfterScan,
      liveness: null,
      sequencer: null,
      listener: null,
      closing: null,
    };
    const { reads, listed } = await new TableReader(ctx).catchUpRead({ keys: [], prefixes: new Map([['l:', 3]]) });
    expect(listed).toEqual(new Map([['l:', ['l:1', 'l:3', 'l:4']]]));
    const lockedRead = reads.filter((r) => r.status.locked).map((r) => r.key);
    expect(lockedRead.slice(0, 3)).toEqual(['l:1', 'l:3', 'l:4']);
  });
});
