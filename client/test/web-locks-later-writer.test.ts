import { afterEach, describe, expect, it } from 'vitest';
import type { Lock, LockClient, LockEvent } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Starts a request on `client` that holds `name` until the test ends; resolves with its lock once granted. */
async function holding(client: LockClient, name: string, mode: 'shared' | 'exclusive') {
  let granted!: (lock: Lock | null) => void;
  const lock = new Promise<Lock | null>((resolve) => (granted = resolve));
  void client.locks
    .request(name, { mode }, (l) => {
      granted(l);
      return new Promise(() => undefined);
    })
    .catch(() => undefined);
  return within(lock);
}

/** Records `observer`'s events under `prefix`; `saw` awaits the `count`th event of a type and session (bounded). */
async function recorder(observer: LockClient, prefix: string) {
  const events: LockEvent[] = [];
  let onEvent: (() => void) | undefined;
  await observer.watch(prefix, (event) => {
    events.push(event);
    onEvent?.();
  });
  const saw = (type: string, session: string, count = 1) =>
    within(
      new Promise<void>((resolve) => {
        onEvent = () => {
          if (events.filter((e) => e.event === type && e.session === session).length >= count) resolve();
        };
        onEvent();
      }),
      2000,
      `${type} #${count} of ${session}`,
    );
  return { events, saw };
}

describe('client.locks: a shared request never waits behind another client writer made after it', () => {
  it('is placed at once when made while the head re-checks the server queue by timer (the watch refused)', async () => {
    h = await startHarness({ limits: { maxWatchesPerSession: 1 } });
    let onReceived = () => {};
    const rec = recordingTransport(() => onReceived());
    const alice = await h.connect({ transport: rec.transport });
    const bob = await h.connect();
    const dave = await h.connect();
    const carol = await h.connect();
    await alice.watch('app:', () => undefined); // the application's watch takes the session's one watch
    const name = 'polled';
    const first = await holding(alice, name, 'shared');
    const seen = await recorder(carol, name);
    const bobController = new AbortController();
    void bob.locks.request(name, { signal: bobController.signal }, () => 'bob').catch(() => undefined);
    await seen.saw('queued', bob.session);
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    const statuses = () => rec.sent.filter((f) => f.op === 'status' && f.key === name).length;
    // Let the re-checks back off (50, 100, 200, 400 ms): the next one is 800 ms away.
    await within(
      new Promise<void>((resolve) => {
        onReceived = () => {
          if (statuses() >= 5) resolve();
        };
      }),
      3000,
      'five status asks',
    );
    await alice.ping();
    // Alice's third read is made now, before dave's write.
    const third = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    await alice.ping();
    void dave.locks.request(name, () => 'dave').catch(() => undefined);
    await seen.saw('queued', dave.session);
    bobController.abort(new Error('bob gave up'));
    expect(await within(second.catch((e: unknown) => e), 5000, "alice's second read")).toBe(first?.token);
    // In a browser: [bob (X), alice's second (S), alice's third (S), dave (X)]: bob leaves, both reads are grantable.
    expect(await within(third.catch((e: unknown) => e), 5000, "alice's third read")).toBe(first?.token);
  });
});
