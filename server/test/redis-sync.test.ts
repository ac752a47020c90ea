import { afterEach, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '../src/server.js';
import { createRedisStore } from '../src/redis/redis-store.js';
import { useRedisStores, type PubSubProxy } from './redis-harness.js';
import { RawClient, type Frame } from './server-harness.js';

/**
 * A node answers a request that does not touch the lock table (a `ping`)
 * without a Redis step of its own, so without more it may answer before a
 * note that Redis published to it earlier has arrived: a holder would get
 * its `pong` after the next holder's grant, yet before its `lost`.
 */
describe('a Redis node answers a ping after the notes Redis sent it before', () => {
  const stores = useRedisStores('sync');
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];
  // Registered after the harness's hooks, so it runs before they close the proxies.
  afterEach(async () => {
    for (const client of clients.splice(0)) client.ws.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  async function node(url: string, ns: string, commandTimeout?: number): Promise<LockServer> {
    const store = createRedisStore({ url, namespace: ns, ...(commandTimeout === undefined ? {} : { commandTimeout }) });
    const server = await createLockServer({ port: 0, heartbeatInterval: 0, store });
    servers.push(server);
    return server;
  }

  async function client(server: LockServer): Promise<RawClient> {
    const { client: connected } = await RawClient.connect(server.url);
    clients.push(connected);
    return connected;
  }

  /**
   * A holder on node a (reached through a proxy) holds `k`; `fault` is set
   * off on the proxy; a thief on node b steals `k` and is granted; then the
   * holder pings node a. Resolves with the holder's grant and the first of
   * its `lost` and its pong.
   */
  async function stealThenPing(fault: (proxy: PubSubProxy) => void, commandTimeout?: number) {
    const ns = stores.namespace();
    const proxy = await stores.proxy();
    const a = await node(proxy.url, ns, commandTimeout);
    const b = await node(stores.redis.url, ns);
    const holder = await client(a);
    const thief = await client(b);

    const held = await holder.request({ op: 'acquire', id: 1, key: 'k' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    fault(proxy);
    const stolen = await thief.request({ op: 'acquire', id: 1, key: 'k', steal: true });
    expect(stolen).toMatchObject({ ok: true, acquired: true });

    // The steal ran in Redis before this ping was sent: the ping's answer must come after the lost.
    holder.send({ op: 'ping', id: 2 });
    const wait = commandTimeout ?? 3000;
    const first = await holder.next((f: Frame) => f.type === 'lost' || (f.type === 'reply' && f.id === 2), 'the lost or the pong', wait);
    return { holder, held, first };
  }

  it("tells a holder lost before answering its ping sent after a steal on another node was granted", async () => {
    // What Redis publishes to node a takes 150 ms; replies to its commands do not.
    const { holder, held, first } = await stealThenPing((proxy) => proxy.delay(150));
    expect(first, JSON.stringify(first)).toMatchObject({ type: 'lost', key: 'k', token: held.token, reason: 'stolen' });
    expect(await holder.reply(2)).toMatchObject({ ok: true });
  });

  it("tells a holder lost before answering its ping when the steal's note was lost in a break of its node's pub/sub connection", async () => {
    // Node a's pub/sub connection drops and cannot come back for 300 ms: the steal's note never reaches it.
    const { holder, held, first } = await stealThenPing((proxy) => proxy.cutSubscribers(300), 5000);
    expect(first, JSON.stringify(first)).toMatchObject({ type: 'lost', key: 'k', token: held.token });
    expect(await holder.reply(2)).toMatchObject({ ok: true });
  });

  it('still answers a ping, after the command timeout, when its node hears nothing over pub/sub', async () => {
    const commandTimeout = 300;
    const ns = stores.namespace();
    const silent = await stores.proxy();
    const a = await node(silent.url, ns, commandTimeout);
    const pinger = await client(a);
    silent.silence();
    const sent = performance.now();
    expect(await pinger.request({ op: 'ping', id: 1 })).toMatchObject({ ok: true });
    // The barrier never came back: the answer waited for its deadline, then gave up. A lower bound
    // on a real timer cannot fail from a slow machine (timers never run more than 1 ms early).
    expect(performance.now() - sent).toBeGreaterThanOrEqual(commandTimeout - 1);
  });
});
