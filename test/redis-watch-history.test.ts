import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LockServer } from '@lockwire/server';
import { BatchSequencer } from '../server/src/redis/batch-sequencer.js';
import type { Batch } from '../server/src/redis/records.js';
import { startNodesAt, useRedisNodes } from './helpers/redis-nodes.js';
import { RawClient } from './helpers/raw-client.js';
import { startRedisCluster, type RedisCluster } from './helpers/redis-server.js';
import { startPubSubGate, type PubSubGate } from './helpers/tap-proxy.js';

// A node holds a step's batch whose predecessor it has not heard, since that
// step may still be on its way on its pub/sub connection; after the gap wait
// it delivers it anyway. A predecessor that ran before the node subscribed
// never comes: the node must not wait for it. One that ran after still
// comes, later than the node's own reply, and must be waited for.

/** The holding node's gap wait: far beyond any bound a test waits for an event. */
const GAP_WAIT = 30_000;

/** ms an event the node need not hold takes at most to reach a watch; far below `GAP_WAIT`. */
const PROMPT = 2000;

/**
 * A key is acquired and released through one node; a second node starts
 * after that, with a gap wait far beyond the test's bounds. A watch there
 * must stream the first grant of the key a session there takes before the
 * grant of a new key taken right after it, each within `PROMPT`.
 */
async function firstGrantStreamsAtOnce(
  start: (options: { gapWait?: number }) => Promise<LockServer[]>,
  connect: (server: LockServer) => Promise<RawClient>,
): Promise<void> {
  const [founder] = await start({});
  if (!founder) throw new Error('the first node did not start');
  const earlier = await connect(founder);
  expect(await earlier.request({ op: 'acquire', key: 'doc:1' })).toMatchObject({ ok: true });
  expect(await earlier.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });

  // The key's history (its version) began before this node subscribed.
  const [joined] = await start({ gapWait: GAP_WAIT });
  if (!joined) throw new Error('the joining node did not start');
  const watcher = await connect(joined);
  const holder = await connect(joined);
  expect(await watcher.request({ op: 'watch', prefix: 'doc:' })).toMatchObject({ ok: true });
  const grant = await holder.request({ op: 'acquire', key: 'doc:1' });
  expect(grant).toMatchObject({ ok: true });
  // A key with no history: its step has no predecessor to wait for, so its event goes out at once.
  const fresh = await holder.request({ op: 'acquire', key: 'doc:2' });
  expect(fresh).toMatchObject({ ok: true });

  const isEvent = (m: { type: string }) => m.type === 'event';
  const first = await watcher.next(isEvent, { timeout: PROMPT, label: 'the first event' });
  const second = await watcher.next(isEvent, { timeout: PROMPT, label: 'the second event' });
  expect([first, second].map((e) => [e.key, e.event, e.session, e.token])).toEqual([
    ['doc:1', 'acquired', holder.session, grant.token],
    ['doc:2', 'acquired', holder.session, fresh.token],
  ]);
}

describe('Redis store: a watch on a node that joined after a key had history', () => {
  const nodes = useRedisNodes('rwhist');
  const servers: LockServer[] = [];
  const gates: PubSubGate[] = [];
  let run = 0;

  afterEach(async () => {
    for (const gate of gates) gate.release();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    for (const gate of gates.splice(0)) gate.close();
  });

  /** The namespace of the running test: its own lock table. */
  let ns = '';
  beforeEach(() => {
    ns = `rwhist${process.pid}y${++run}`;
  });

  it('streams the first grant a session of that node takes at once, before a later grant of a new key', async () => {
    await firstGrantStreamsAtOnce((options) => startNodesAt([nodes.redis.url], { namespace: ns, ...options }, servers), nodes.connect);
  });

  it('still holds its own grant for an earlier step made through another node after it joined, and streams both in order', async () => {
    const gate = await startPubSubGate(nodes.redis.port);
    gates.push(gate);
    const [late, other] = await startNodesAt([gate.url, nodes.redis.url], { namespace: ns, gapWait: GAP_WAIT }, servers);
    if (!late || !other) throw new Error('the nodes did not start');
    const watcher = await nodes.connect(late);
    const holder = await nodes.connect(late);
    const elsewhere = await nodes.connect(other);
    expect(await watcher.request({ op: 'watch', prefix: 'doc:' })).toMatchObject({ ok: true });

    // The watching node hears the other node's steps only once the gate lets them through,
    // after the reply of its own step (on its command connection) that followed them.
    gate.hold();
    const before = await elsewhere.request({ op: 'acquire', key: 'doc:1' });
    expect(await elsewhere.request({ op: 'release', key: 'doc:1' })).toMatchObject({ ok: true });
    const grant = await holder.request({ op: 'acquire', key: 'doc:1' });
    expect(grant).toMatchObject({ ok: true });
    gate.release();

    const first = await watcher.nextEvent('doc:1', undefined, { timeout: PROMPT });
    const second = await watcher.nextEvent('doc:1', undefined, { timeout: PROMPT });
    const third = await watcher.nextEvent('doc:1', undefined, { timeout: PROMPT });
    expect([first, second, third].map((e) => [e.event, e.session, e.token])).toEqual([
      ['acquired', elsewhere.session, before.token],
      ['released', elsewhere.session, before.token],
      ['acquired', holder.session, grant.token],
    ]);
  });
});

describe('Redis Cluster store: a watch on a node that joined after a key had history', () => {
  let cluster: RedisCluster | undefined;
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  it('streams the first grant a session of that node takes at once, before a later grant of a new key', async () => {
    const url = cluster?.url;
    if (url === undefined) throw new Error('the Redis Cluster is not started');
    const namespace = `rwhistc${process.pid}`;
    await firstGrantStreamsAtOnce(
      (options) => startNodesAt([url], { cluster: true, namespace, ...options }, servers),
      async (server) => {
        const client = await RawClient.connect(server.url);
        clients.push(client);
        return client;
      },
    );
  });
});

/** A batch of key `k` (or of `key`) from the step that moved its version from `pv` to `v`. */
const batch = (pv: number, v: number, key = 'k'): Batch => ({ key, encoded: `e:${key}`, pv, v, items: [] });

/** A sequencer that heard everything from Redis time `heardSince` on; records deliveries and keys given up on. */
function sequencer(heardSince: number) {
  const delivered: Array<{ key: string; v: number; withEvents: boolean }> = [];
  const readAgain: string[] = [];
  const seq = new BatchSequencer({
    node: () => 'me',
    gapWait: GAP_WAIT,
    heardSince,
    deliver: (b, withEvents) => delivered.push({ key: b.key, v: b.v, withEvents }),
    gaveUp: (encoded) => readAgain.push(encoded),
  });
  return { seq, delivered, readAgain };
}

describe('the batch sequencer of a node that subscribed at a known Redis time', () => {
  it('delivers at once the first batch of a key whose predecessor ran before that time, and holds one whose predecessor ran after', () => {
    const { seq, delivered, readAgain } = sequencer(100);
    seq.accept(batch(40, 150));
    seq.accept(batch(120, 130, 'o'));
    seq.accept(batch(100, 110, 'p'));
    expect(delivered).toEqual([{ key: 'k', v: 150, withEvents: true }]);
    seq.accept(batch(0, 120, 'o'));
    seq.accept(batch(60, 100, 'p'));
    expect(delivered.slice(1)).toEqual([
      { key: 'o', v: 120, withEvents: true },
      { key: 'o', v: 130, withEvents: true },
      { key: 'p', v: 100, withEvents: true },
      { key: 'p', v: 110, withEvents: true },
    ]);
    expect(readAgain).toEqual([]);
    seq.close();
  });

  it('has a key read again when a step from before that time reaches it after all, without its events', () => {
    const { seq, delivered, readAgain } = sequencer(100);
    seq.accept(batch(40, 150));
    seq.accept(batch(20, 40));
    expect(delivered).toEqual([
      { key: 'k', v: 150, withEvents: true },
      { key: 'k', v: 40, withEvents: false },
    ]);
    expect(readAgain).toEqual(['e:k']);
    // A second copy of a step after that time is only a copy.
    seq.accept(batch(40, 150));
    expect(readAgain).toEqual(['e:k']);
    seq.close();
  });
});
