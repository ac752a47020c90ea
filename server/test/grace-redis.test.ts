import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { createRedisStore } from '../src/redis/redis-store.js';
import { createLockServer, type LockServer } from '../src/server.js';
import { describeGraceLosses } from './grace-loss-scenarios.js';
import { describeGrace } from './grace-scenarios.js';
import { useRedisStores } from './redis-harness.js';
import { RawClient, sessionLog } from './server-harness.js';

const stores = useRedisStores('grace');

describeGrace('redis store', async (clock) => createRedisStore({ url: stores.redis.url, namespace: stores.namespace(), clock }));
describeGraceLosses('redis store', async (clock) => createRedisStore({ url: stores.redis.url, namespace: stores.namespace(), clock }));

describe('session grace across Redis-store nodes', () => {
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];

  afterEach(async () => {
    for (const client of clients.splice(0)) client.ws.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  it('answers a resume that reaches another node with a fresh session; the old one keeps its locks until its own node ends its grace', async () => {
    const clock = createManualClock(Date.now());
    const namespace = stores.namespace();
    const logA = sessionLog();
    const node = async (logger?: ReturnType<typeof sessionLog>['logger']) => {
      const server = await createLockServer({
        port: 0,
        heartbeatInterval: 0,
        clock,
        sessionGrace: 5000,
        store: createRedisStore({ url: stores.redis.url, namespace, clock }),
        ...(logger ? { logger } : {}),
      });
      servers.push(server);
      return server;
    };
    const nodeA = await node(logA.logger);
    const nodeB = await node();
    const a = await RawClient.connect(nodeA.url);
    clients.push(a.client);
    expect(await a.client.request({ op: 'acquire', id: 1, key: 'k' })).toMatchObject({ acquired: true });
    a.client.ws.terminate();
    await logA.closed(1, 'node A to see the drop');

    const query = `?session=${String(a.welcome.session)}&resume=${String(a.welcome.resume)}`;
    const elsewhere = await RawClient.connect(nodeB.url + query);
    clients.push(elsewhere.client);
    expect(elsewhere.welcome).toMatchObject({ resumed: false, held: [] });
    expect(elsewhere.welcome.session).not.toBe(a.welcome.session);
    elsewhere.client.send({ op: 'acquire', id: 1, key: 'k' });
    await elsewhere.client.next((f) => f.type === 'queued', 'the queued acquire');
    expect(await elsewhere.client.request({ op: 'status', id: 2, key: 'k' })).toMatchObject({
      holders: [{ session: a.welcome.session }],
    });
    clock.advance(5000);
    expect(await elsewhere.client.reply(1)).toMatchObject({ ok: true, acquired: true });
  });
});
