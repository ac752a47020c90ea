import { describe, expect, it, vi } from 'vitest';
import { createManualClock, type ManualClock } from '../src/clock.js';
import type { BatchSequencerOptions } from '../src/redis/batch-sequencer.js';
import type { AcquireInput, AcquireOutcome } from '../src/store.js';
import { useRedisStores, type ListenerLog, type PubSubProxy } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

/** A gap wait that, when set, replaces the one the store gives its batch sequencer. */
const gap = vi.hoisted(() => ({ wait: undefined as number | undefined }));

vi.mock('../src/redis/batch-sequencer.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/redis/batch-sequencer.js')>();
  class GapSequencer extends actual.BatchSequencer {
    constructor(options: BatchSequencerOptions) {
      super({ ...options, gapWait: gap.wait ?? options.gapWait });
    }
  }
  return { ...actual, BatchSequencer: GapSequencer };
});

/** Logs the outcome when the promise resolves, as the session layer answers the client then. */
function answered(log: ListenerLog, who: string, outcome: Promise<AcquireOutcome>): Promise<AcquireOutcome> {
  return outcome.then((o) => {
    log.push(`reply ${who} ${o.status}${o.status === 'granted' ? ` ${o.token}` : ''}`);
    return o;
  });
}

describe('the order in which the Redis store answers and notifies', () => {
  const stores = useRedisStores('ord');
  let clock: ManualClock;

  /** Starts nodes on one fresh namespace; each url is Redis' own or a proxy's. */
  async function nodes(urls: string[]) {
    clock = createManualClock();
    return stores.startNodes(urls, { clock });
  }

  async function slowPubSub(ms: number): Promise<PubSubProxy> {
    const proxy = await stores.proxy();
    proxy.delay(ms);
    return proxy;
  }

  it('answers an acquire before reporting the lost of its grant when a steal on the same node follows at once', async () => {
    const [node] = await nodes([stores.redis.url]);
    if (!node) throw new Error('no node');
    const { store, log } = node;
    for (let round = 0; round < 20; round++) {
      const key = `hot:${round}`;
      const first = answered(log, 's1', store.acquire('s1', acquireInput(round * 2 + 1, key)));
      const second = answered(log, 's2', store.acquire('s2', acquireInput(round * 2 + 2, key, { steal: true })));
      const granted = await first;
      await second;
      if (granted.status !== 'granted') throw new Error(`s1 was not granted ${key}`);
      const lost = await log.next(new RegExp(`^lost s1 ${key} ${granted.token} stolen$`));
      expect(log.lines.indexOf(lost), log.lines.join('\n')).toBeGreaterThan(log.lines.indexOf(`reply s1 granted ${granted.token}`));
      await store.release('s2', key);
    }
  });

  it('answers a re-acquire with its token before reporting that hold stolen by a steal right after', async () => {
    const [node] = await nodes([stores.redis.url]);
    if (!node) throw new Error('no node');
    const { store, log } = node;
    let ticket = 100;
    for (let round = 0; round < 20; round++) {
      const key = `re:${round}`;
      const held = await store.acquire('s1', acquireInput(++ticket, key));
      if (held.status !== 'granted') throw new Error(`s1 was not granted ${key}`);
      const again = answered(log, 's1', store.acquire('s1', acquireInput(++ticket, key)));
      const steal = store.acquire('s2', acquireInput(++ticket, key, { steal: true }));
      expect(await again).toMatchObject({ status: 'granted', token: held.token });
      await steal;
      const lost = await log.next(new RegExp(`^lost s1 ${key} ${held.token} stolen$`));
      expect(log.lines.lastIndexOf(lost), log.lines.join('\n')).toBeGreaterThan(log.lines.lastIndexOf(`reply s1 granted ${held.token}`));
      await store.release('s2', key);
    }
  });

  it('reports the lost of a steal on another node before answering the holder\'s release not_holder', async () => {
    const slow = await slowPubSub(80);
    const [a, b] = await nodes([slow.url, stores.redis.url]);
    if (!a || !b) throw new Error('no nodes');
    const held = await a.store.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    await b.store.acquire('t', acquireInput(2, 'k', { steal: true }));
    // The steal ran in Redis; its note to a's node is still on its way.
    const released = await a.store.release('h', 'k').then(
      () => 'released',
      (error: unknown) => `release failed: ${String(error)}`,
    );
    a.log.push(released);
    expect(released).toMatch(/not_holder|does not hold/);
    const lost = await a.log.next(new RegExp(`^lost h k ${held.token} stolen$`));
    expect(a.log.lines.indexOf(lost), a.log.lines.join('\n')).toBeLessThan(a.log.lines.indexOf(released));
  });

  it('expires a new grant to a holder whose earlier grant was stolen and released on another node unheard', async () => {
    const slow = await slowPubSub(80);
    const [a, b] = await nodes([slow.url, stores.redis.url]);
    if (!a || !b) throw new Error('no nodes');
    const first = await a.store.acquire('h', acquireInput(1, 'k'));
    if (first.status !== 'granted') throw new Error('h was not granted');
    await b.store.acquire('t', acquireInput(2, 'k', { steal: true }));
    await b.store.release('t', 'k');
    // h acquires again before its node heard of the steal: a new grant, with a hold timeout.
    const second = await answered(a.log, 'h', a.store.acquire('h', acquireInput(3, 'k', { holdTimeout: 100 })));
    if (second.status !== 'granted') throw new Error('h was not granted again');
    expect(second.token).toBeGreaterThan(first.token);
    const lost = await a.log.next(new RegExp(`^lost h k ${first.token} stolen$`));
    expect(a.log.lines.indexOf(lost), a.log.lines.join('\n')).toBeLessThan(a.log.lines.indexOf(`reply h granted ${second.token}`));
    clock.advance(150);
    await a.log.next(new RegExp(`^lost h k ${second.token} expired$`), 2000);
    expect((await b.store.status('k', null)).holders).toEqual([]);
  });

  it('hands a released key to a waiter on a node that joined after the key had history without holding its notes', async () => {
    // A grant held for a missing predecessor would wait out this gap wait: far longer than the bounded wait below.
    gap.wait = 60_000;
    try {
      const [old] = await nodes([stores.redis.url]);
      if (!old) throw new Error('no node');
      expect(await old.store.acquire('holder', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
      // A node started now (as after a restart) has never seen k.
      const [fresh] = await stores.startNodes([stores.redis.url], { namespace: old.namespace, clock });
      if (!fresh) throw new Error('no node');
      expect(await fresh.store.acquire('waiter', acquireInput(2, 'k'))).toMatchObject({ status: 'queued' });
      await old.store.release('holder', 'k');
      await fresh.log.next(/^granted waiter #2 /);
    } finally {
      gap.wait = undefined;
    }
  });

  it('never streams to a watch an event of a step its snapshot already shows, even when the event arrives late', async () => {
    const slow = await slowPubSub(150);
    const [a, b] = await nodes([slow.url, stores.redis.url]);
    if (!a || !b) throw new Error('no nodes');
    const shared = (ticket: number): AcquireInput => acquireInput(ticket, 'doc', { mode: 'shared' });
    // a knows doc from its own step, so it does not wait for doc's history.
    expect(await a.store.acquire('s1', shared(1))).toMatchObject({ status: 'granted' });
    // The event of this step reaches a 150 ms late, after the watch's snapshot was read.
    expect(await b.store.acquire('s2', shared(2))).toMatchObject({ status: 'granted' });
    const events: string[] = [];
    let heard: (() => void) | null = null;
    const handle = await a.store.watch('', 100, null, (e) => {
      events.push(`${e.event} ${e.session} holders=${e.holders}`);
      heard?.();
    });
    try {
      expect(handle.snapshot.locks.map((l) => l.holders.map((h) => h.session).join(','))).toEqual(['s1,s2']);
      // A later step's event comes after the late one on the same connection.
      const third = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no event for s3 within 3000 ms: ${events.join('; ')}`)), 3000);
        heard = () => {
          if (events.some((e) => e.includes(' s3 '))) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
      expect(await b.store.acquire('s3', shared(3))).toMatchObject({ status: 'granted' });
      await third;
      expect(events).toEqual(['acquired s3 holders=3']);
    } finally {
      handle.stop();
    }
  });

  it('reports a grant lost when the steal that ended it was heard before the grant itself', async () => {
    const proxy = await slowPubSub(0);
    const [a, b] = await nodes([proxy.url, stores.redis.url]);
    if (!a || !b) throw new Error('no nodes');
    if ((await a.store.acquire('h', acquireInput(1, 'k'))).status !== 'granted') throw new Error('h was not granted');
    if ((await a.store.acquire('w', acquireInput(2, 'k'))).status !== 'queued') throw new Error('w was not queued');
    // The release grants w in Redis at once; its reply, which carries w's grant, reaches a late.
    proxy.delayReplies(1500);
    const released = a.store.release('h', 'k');
    for (let tries = 0; (await b.store.status('k', 'w')).heldByYou !== true; tries++) {
      if (tries > 200) throw new Error('the release never reached Redis');
    }
    const stolen = await b.store.acquire('t', acquireInput(3, 'k', { steal: true }));
    if (stolen.status !== 'granted') throw new Error('t was not granted');
    await released;
    // Both are out by the time the release is answered: nothing else of w's can be answered in between.
    const lines = a.log.lines.filter((line) => / w /.test(line));
    const token = lines[0]?.split(' ')[3] ?? 'none';
    expect(lines).toEqual([`granted w #2 ${token}`, `lost w k ${token} stolen`]);
  });
});
