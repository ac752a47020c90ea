import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { RawClient, type Frame } from './helpers/raw-client.js';
import { onPort, startRedisCluster, type RedisCluster } from './helpers/redis-server.js';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { encodeKey } from '../server/src/redis/key-codec.js';
import { hashSlot } from '../server/src/redis/shard-sentinels.js';

// A FLUSHALL on one primary of a Redis Cluster leaves its run_id as it was,
// and when that primary holds no node's liveness key, neither the run_id
// check nor the renew of the liveness key sees it: the nodes must find out
// through what they keep on every primary.
let cluster: RedisCluster | undefined;
const servers: LockServer[] = [];
const clients: RawClient[] = [];
let run = 0;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function started(): RedisCluster {
  if (!cluster) throw new Error('the Redis Cluster is not started');
  return cluster;
}

async function node(namespace: string, nodeTtl: number): Promise<LockServer> {
  const store = createRedisStore({ url: started().url, cluster: true, namespace, nodeTtl });
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
  servers.push(server);
  return server;
}

async function connect(server: LockServer): Promise<RawClient> {
  const c = await RawClient.connect(server.url);
  clients.push(c);
  return c;
}

type SlotRange = [number, number, [string, number, string, ...unknown[]], ...unknown[]];

async function slotRanges(): Promise<SlotRange[]> {
  const port = started().ports[0];
  if (port === undefined) throw new Error('no primary');
  return (await onPort(port, (c) => c.sendCommand(['CLUSTER', 'SLOTS']))) as unknown as SlotRange[];
}

async function slotOf(name: string): Promise<number> {
  const port = started().ports[0];
  if (port === undefined) throw new Error('no primary');
  return Number(await onPort(port, (c) => c.sendCommand(['CLUSTER', 'KEYSLOT', name])));
}

/** The port of the primary that owns `name`'s slot. */
async function ownerOf(name: string): Promise<number> {
  const slot = await slotOf(name);
  for (const [from, to, [, port]] of await slotRanges()) if (slot >= from && slot <= to) return Number(port);
  throw new Error(`no primary owns slot ${slot}`);
}

/** A lock key (not in `taken`) whose Redis keys the primary on `port` holds. */
async function keyOn(namespace: string, port: number, taken: string[] = []): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const key = `k${i}`;
    if (!taken.includes(key) && (await ownerOf(`${namespace}:{${encodeKey(key)}}:h`)) === port) return key;
  }
  throw new Error(`no key found on the primary at ${port}`);
}

interface TwoNodes {
  namespace: string;
  a: LockServer;
  b: LockServer;
  /** A primary that holds neither node's liveness key nor the node set. */
  free: number;
}

/**
 * Two nodes of a fresh namespace such that one primary holds no liveness
 * key nor the node set: node ids are random, so the namespace is started
 * again while every primary holds one.
 */
async function twoNodesAndAFreePrimary(nodeTtl: number): Promise<TwoNodes> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const namespace = `cf${process.pid}x${++run}`;
    const a = await node(namespace, nodeTtl);
    const b = await node(namespace, nodeTtl);
    const taken = new Set<number>();
    for (const port of started().ports) {
      if ((await onPort(port, (c) => c.keys(`${namespace}:node*`))).length > 0) taken.add(port);
    }
    const free = started().ports.find((p) => !taken.has(p));
    if (free !== undefined) return { namespace, a, b, free };
    await Promise.all(servers.splice(0).map((s) => s.close()));
  }
  throw new Error('every primary held a liveness key in 20 namespaces');
}

/** Milliseconds from `since` (performance.now()) to the `lost` of `key` `client` gets, and that message. */
async function lostAfter(client: RawClient, key: string, since: number, timeout: number): Promise<{ ms: number; lost: Frame }> {
  const lost = await client.nextLost(key, { timeout });
  return { ms: performance.now() - since, lost };
}

const refused = { ok: false, error: { code: 'store_unavailable' } };

describe('a FLUSHALL of one Redis Cluster primary', () => {
  it('the slot a node reckons for a sentinel’s hash tag is the one Redis Cluster hashes the key to', async () => {
    const tags = ['s0', 's1', 'sz', 's10', 'sabc', '123456789'];
    const slots = await Promise.all(tags.map((tag) => slotOf(`lw:shard:{${tag}}:node.1`)));
    expect(tags.map(hashSlot)).toEqual(slots);
    // CRC16/XMODEM's check value, as Redis Cluster's specification gives it.
    expect(hashSlot('123456789')).toBe(0x31c3 % 16384);
  });

  it('of a primary holding no liveness key tells the holders on every node their lock is lost (revoked) within a third of the node TTL and a renew round, and each node then refuses acquires of the flushed keys', async () => {
    const nodeTtl = 3000;
    const { namespace, a, b, free } = await twoNodesAndAFreePrimary(nodeTtl);
    const keyA = await keyOn(namespace, free);
    const keyB = await keyOn(namespace, free, [keyA]);
    const holderA = await connect(a);
    const holderB = await connect(b);
    expect(await holderA.request({ op: 'acquire', key: keyA })).toMatchObject({ ok: true, acquired: true });
    expect(await holderB.request({ op: 'acquire', key: keyB })).toMatchObject({ ok: true, acquired: true });

    await onPort(free, (c) => c.sendCommand(['FLUSHALL']));
    const flushed = performance.now();
    const [toldA, toldB] = await Promise.all([lostAfter(holderA, keyA, flushed, 2 * nodeTtl), lostAfter(holderB, keyB, flushed, 2 * nodeTtl)]);
    expect(toldA.lost).toMatchObject({ key: keyA, reason: 'revoked' });
    expect(toldB.lost).toMatchObject({ key: keyB, reason: 'revoked' });
    // A renew round runs every third of the node TTL; the slack is for the round itself on a loaded machine.
    expect(Math.max(toldA.ms, toldB.ms)).toBeLessThan(nodeTtl / 3 + 1000);
    // Each node holds off for a node TTL from when it found out, so nobody is granted the keys yet.
    const [againA, otherB] = await Promise.all([
      holderA.request({ op: 'acquire', key: keyB, acquireTimeout: 0 }),
      holderB.request({ op: 'acquire', key: keyA, acquireTimeout: 0 }),
    ]);
    expect(againA).toMatchObject(refused);
    expect(otherB).toMatchObject(refused);
  }, 30_000);

  it('is noticed too after the slots of what the nodes kept on it moved to another primary: each node keeps its own on every primary', async () => {
    const nodeTtl = 3000;
    const { namespace, a, free } = await twoNodesAndAFreePrimary(nodeTtl);
    const ports = started().ports;
    // What the nodes keep on the free primary (no lock is held yet); their liveness keys are elsewhere.
    const sentinels = await onPort(free, (c) => c.keys(`${namespace}:*`));
    expect(sentinels.length).toBeGreaterThan(0);
    const target = ports.find((p) => p !== free);
    if (target === undefined) throw new Error('one primary only');
    for (const slot of new Set(await Promise.all(sentinels.map(slotOf)))) await moveSlot(slot, free, target);
    for (const name of sentinels) expect(await ownerOf(name)).toBe(target);
    // The nodes place others on the free primary at one of their next renew rounds.
    const deadline = performance.now() + 2 * nodeTtl;
    let placed: string[] = [];
    while (placed.length === 0 && performance.now() < deadline) {
      placed = (await onPort(free, (c) => c.keys(`${namespace}:*`))).filter((name) => !sentinels.includes(name));
      if (placed.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(placed.length).toBeGreaterThan(0);

    const key = await keyOn(namespace, free);
    const holder = await connect(a);
    expect(await holder.request({ op: 'acquire', key })).toMatchObject({ ok: true, acquired: true });
    await onPort(free, (c) => c.sendCommand(['FLUSHALL']));
    const told = await lostAfter(holder, key, performance.now(), 2 * nodeTtl);
    expect(told.lost).toMatchObject({ key, reason: 'revoked' });
    expect(told.ms).toBeLessThan(nodeTtl / 3 + 1000);
  }, 30_000);
});

/** Moves hash slot `slot` with its keys from the primary on `from` to the one on `to`, as a resharding does. */
async function moveSlot(slot: number, from: number, to: number): Promise<void> {
  const idOf = (port: number) => onPort(port, async (c) => String(await c.sendCommand(['CLUSTER', 'MYID'])));
  const [fromId, toId] = [await idOf(from), await idOf(to)];
  await onPort(to, (c) => c.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId]));
  await onPort(from, (c) => c.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId]));
  for (;;) {
    const keys = (await onPort(from, (c) => c.sendCommand(['CLUSTER', 'GETKEYSINSLOT', String(slot), '100']))) as string[];
    if (keys.length === 0) break;
    await onPort(from, (c) => c.sendCommand(['MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'KEYS', ...keys]));
  }
  for (const port of [to, from, ...started().ports.filter((p) => p !== to && p !== from)]) {
    await onPort(port, (c) => c.sendCommand(['CLUSTER', 'SETSLOT', String(slot), 'NODE', toId]));
  }
}
