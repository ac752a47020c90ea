import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { BatchSequencer } from '../src/redis/batch-sequencer.js';
import type { LockEvent, LockStore } from '../src/store.js';
import { listenerLog, useRedisStores, type ListenerLog } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

/** ms by which the watching node hears pub/sub late, while its commands answer on time. */
const LAG = 300;

/** One line per event a watch streamed: `<event> <key> <token>`. */
function eventLine(event: LockEvent): string {
  return `${event.event} ${event.key} ${event.token ?? '-'}`;
}

describe('a Redis watch whose node hears pub/sub later than its reads', () => {
  const stores = useRedisStores('wg');

  /** The watching node reaches Redis through a proxy that delays its pub/sub by LAG; the other node directly. */
  async function twoNodes() {
    const { proxy, proxied, direct } = await stores.twoNodes({ clock: createManualClock(), tolerateCloseFailure: true });
    proxy.delay(LAG);
    return { watching: proxied.store, other: direct.store };
  }

  /** Opens a watch of `prefix` on `store` whose events go to `log`. */
  async function watchInto(store: LockStore, prefix: string, log: ListenerLog) {
    return store.watch(prefix, 1000, null, (event) => log.push(eventLine(event)));
  }

  it('streams a hold taken on another node to a live watch though a list read the key before its broadcast arrived', async () => {
    const { watching, other } = await twoNodes();
    const log = listenerLog();
    expect((await watchInto(watching, '', log)).snapshot.locks).toEqual([]);
    const grant = await other.acquire('holder', acquireInput(1, 'gap:list'));
    if (grant.status !== 'granted') throw new Error('the hold was not granted');
    // The list reads the key while the hold's broadcast is still on its way to this node.
    expect((await watching.list('', 1000, null)).locks.map((l) => l.key)).toEqual(['gap:list']);
    expect(log.lines).toEqual([]);
    await expect(log.next(/^acquired gap:list /, 4 * LAG + 2000)).resolves.toBe(`acquired gap:list ${grant.token}`);
  });

  it('streams a hold taken on another node to a live watch though a second watch read the key before its broadcast arrived', async () => {
    const { watching, other } = await twoNodes();
    const wide = listenerLog();
    const narrow = listenerLog();
    await watchInto(watching, '', wide);
    const grant = await other.acquire('holder', acquireInput(1, 'gap:watch'));
    if (grant.status !== 'granted') throw new Error('the hold was not granted');
    const second = await watchInto(watching, 'gap:', narrow);
    expect(second.snapshot.locks.map((l) => l.key)).toEqual(['gap:watch']);
    await other.release('holder', 'gap:watch');
    await expect(wide.next(/^acquired gap:watch /, 4 * LAG + 2000)).resolves.toBe(`acquired gap:watch ${grant.token}`);
    await wide.next(/^released gap:watch /, 4 * LAG + 2000);
    // The second watch's snapshot shows the hold: it streams only the release.
    await narrow.next(/^released gap:watch /, 4 * LAG + 2000);
    expect(wide.lines).toEqual([`acquired gap:watch ${grant.token}`, `released gap:watch ${grant.token}`]);
    expect(narrow.lines).toEqual([`released gap:watch ${grant.token}`]);
  });
});

describe('the batch sequencer seeded by a watch snapshot', () => {
  it('delivers at once a batch of a key it never heard that follows the version the snapshot read', () => {
    const delivered: Array<{ v: number; withEvents: boolean }> = [];
    const seq = new BatchSequencer({ node: () => 'me', gapWait: 10_000, deliver: (b, withEvents) => delivered.push({ v: b.v, withEvents }) });
    seq.accept({ key: 'k', encoded: 'k006b', pv: 20, v: 30, items: [] });
    expect(delivered).toEqual([]);
    seq.seed('k006b', 20);
    seq.accept({ key: 'k', encoded: 'k006b', pv: 10, v: 20, items: [] });
    expect(delivered).toEqual([
      { v: 30, withEvents: true },
      { v: 20, withEvents: false },
    ]);
    seq.close();
  });
});
