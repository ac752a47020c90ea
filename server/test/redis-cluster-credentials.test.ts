import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis } from '../src/redis/redis-link.js';
import { createRedisStore } from '../src/redis/redis-store.js';
import { createLockServer, type LockServer } from '../src/server.js';
import { startRedisCluster, type RedisCluster } from '../../test/helpers/redis-server.js';
import { RawClient } from './server-harness.js';

const PASSWORD = 'cluster-pw';

let cluster: RedisCluster | undefined;
beforeAll(async () => {
  cluster = await startRedisCluster({ password: PASSWORD });
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

function ports(): number[] {
  if (!cluster) throw new Error('the Redis Cluster is not started');
  return cluster.ports;
}

const servers: LockServer[] = [];
const clients: RawClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

let namespaces = 0;

/** A lockwire node on the cluster, reached through `url` as `--redis-url` gives it. */
async function node(url: string, namespace: string): Promise<LockServer> {
  const store = createRedisStore({ url, cluster: true, namespace, commandTimeout: 2000 });
  const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
  servers.push(server);
  return server;
}

async function connect(server: LockServer): Promise<RawClient> {
  const { client } = await RawClient.connect(server.url);
  clients.push(client);
  return client;
}

describe('a Redis Cluster that requires a password', () => {
  it('is reached with the password of the URL on every primary: locks of keys on all shards are granted, and a release on one node grants a waiter on another', async () => {
    const [a, b, c] = ports();
    const namespace = `cred${namespaces++}`;
    const first = await node(`redis://:${PASSWORD}@127.0.0.1:${a}`, namespace);
    const second = await node(`redis://default:${PASSWORD}@127.0.0.1:${b},redis://default:${PASSWORD}@127.0.0.1:${c}`, namespace);
    const holder = await connect(first);
    const waiter = await connect(second);
    // Twelve keys hash to slots of all three primaries.
    for (let i = 0; i < 12; i++) {
      expect(await holder.request({ op: 'acquire', id: i, key: `k${i}` })).toMatchObject({ acquired: true });
    }
    waiter.send({ op: 'acquire', id: 'w', key: 'k0' });
    await waiter.next((f) => f.type === 'queued', 'the waiter to queue');
    expect(await holder.request({ op: 'release', id: 'r', key: 'k0' })).toMatchObject({ released: true });
    expect(await waiter.reply('w')).toMatchObject({ ok: true, acquired: true });
  });

  it('takes the password of the first node that gives one for the nodes listed without it', async () => {
    const [a, b] = ports();
    const server = await node(`redis://127.0.0.1:${a},redis://:${PASSWORD}@127.0.0.1:${b}`, `cred${namespaces++}`);
    const client = await connect(server);
    expect(await client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
  });

  it('refuses a list of nodes with different passwords or schemes before connecting', async () => {
    const [a, b] = ports();
    const options = { cluster: true, commandTimeout: 1000, reconnectDelay: 100 };
    await expect(connectRedis({ ...options, url: `redis://:${PASSWORD}@127.0.0.1:${a},redis://:other@127.0.0.1:${b}` })).rejects.toThrow(
      /the same user and password/,
    );
    await expect(connectRedis({ ...options, url: `redis://127.0.0.1:${a},rediss://127.0.0.1:${b}` })).rejects.toThrow(
      /all redis:\/\/ or all rediss:\/\//,
    );
  });
});
