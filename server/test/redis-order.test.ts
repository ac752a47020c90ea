import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { createRedisStore } from '../src/redis/redis-store.js';
import type { AcquireInput, AcquireOutcome, LockStore } from '../src/store.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { listenerLog, startPubSubProxy, type ListenerLog, type PubSubProxy } from './redis-harness.js';

const input = (ticket: number, key: string, extra: Partial<AcquireInput> = {}): AcquireInput => ({
  ticket,
  key,
  mode: 'exclusive',
  acquireTimeout: null,
  holdTimeout: null,
  steal: false,
  meta: null,
  ...extra,
});

/** Logs the outcome when the promise resolves, as the session layer answers the client then. */
function answered(log: ListenerLog, who: string, outcome: Promise<AcquireOutcome>): Promise<AcquireOutcome> {
  return outcome.then((o) => {
    log.push(`reply ${who} ${o.status}${o.status === 'granted' ? ` ${o.token}` : ''}`);
    return o;
  });
}

describe('the order in which the Redis store answers and notifies', () => {
  let redis: RedisServer;
  let clock: ManualClock;
  let stores: LockStore[] = [];
  let proxies: PubSubProxy[] = [];
  let namespace = 0;

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    for (const proxy of proxies) proxy.close();
    stores = [];
    proxies = [];
  });

  /** Starts nodes on one fresh namespace; each url is Redis' own or a proxy's. */
  async function nodes(urls: string[]) {
    clock = createManualClock();
    const ns = `ord${process.pid}x${++namespace}`;
    const made: Array<{ store: LockStore; log: ListenerLog }> = [];
    for (const url of urls) {
      const log = listenerLog();
      const store = createRedisStore({ url, namespace: ns, clock });
      await store.start(log.listener);
      stores.push(store);
      made.push({ store, log });
    }
    return made;
  }

  async function slowPubSub(ms: number): Promise<PubSubProxy> {
    const proxy = await startPubSubProxy(redis.port);
    proxy.delay(ms);
    proxies.push(proxy);
    return proxy;
  }

  it('answers an acquire before reporting the lost of its grant when a steal on the same node follows at once', async () => {
    const [node] = await nodes([redis.url]);
    if (!node) throw new Error('no node');
    const { store, log } = node;
    for (let round = 0; round < 20; round++) {
      const key = `hot:${round}`;
      const first = answered(log, 's1', store.acquire('s1', input(round * 2 + 1, key)));
      const second = answered(log, 's2', store.acquire('s2', input(round * 2 + 2, key, { steal: true })));
      const granted = await first;
      await second;
      if (granted.status !== 'granted') throw new Error(`s1 was not granted ${key}`);
      const lost = await log.next(new RegExp(`^lost s1 ${key} ${granted.token} stolen$`));
      expect(log.lines.indexOf(lost), log.lines.join('\n')).toBeGreaterThan(log.lines.indexOf(`reply s1 granted ${granted.token}`));
      await store.release('s2', key);
    }
  });

  it('answers a re-acquire with its token before reporting that hold stolen by a steal right after', async () => {
    const [node] = await nodes([redis.url]);
    if (!node) throw new Error('no node');
    const { store, log } = node;
    let ticket = 100;
    for (let round = 0; round < 20; round++) {
      const key = `re:${round}`;
      const held = await store.acquire('s1', input(++ticket, key));
      if (held.status !== 'granted') throw new Error(`s1 was not granted ${key}`);
      const again = answered(log, 's1', store.acquire('s1', input(++ticket, key)));
      const steal = store.acquire('s2', input(++ticket, key, { steal: true }));
      expect(await again).toMatchObject({ status: 'granted', token: held.token });
      await steal;
      const lost = await log.next(new RegExp(`^lost s1 ${key} ${held.token} stolen$`));
      expect(log.lines.lastIndexOf(lost), log.lines.join('\n')).toBeGreaterThan(log.lines.lastIndexOf(`reply s1 granted ${held.token}`));
      await store.release('s2', key);
    }
  });
});
