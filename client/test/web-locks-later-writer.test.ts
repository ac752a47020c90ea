import { afterEach, describe, expect, it } from 'vitest';
import type { Lock, LockClient, LockEvent } from '@lockwire/client';
import { RawClient } from '../../test/helpers/raw-client.js';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness | undefined;
const raws: RawClient[] = [];
afterEach(async () => {
  for (const raw of raws.splice(0)) raw.ws.close();
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

/** Takes `name` exclusive on `client` and holds it until the returned function is called. */
async function holdingUntilReleased(client: LockClient, name: string): Promise<() => void> {
  let release!: () => void;
  let granted!: () => void;
  const holds = new Promise<void>((resolve) => (granted = resolve));
  void client.locks.request(name, () => {
    granted();
    return new Promise<void>((resolve) => (release = resolve));
  });
  await within(holds);
  return release;
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
  it('is granted when the writer it waited behind leaves, though that session queues a new writer in the same millisecond', async () => {
    h = await startHarness(); // the manual clock stands still: every `since` is the same millisecond
    const alice = await h.connect();
    const carol = await h.connect();
    const bob = await RawClient.connect(h.server.url);
    raws.push(bob);
    const name = 'same-ms';
    const first = await holding(alice, name, 'shared');
    const seen = await recorder(carol, name);
    const firstWrite = bob.id();
    bob.send({ op: 'acquire', id: firstWrite, key: name });
    await seen.saw('queued', bob.session);
    // Alice's second read is made after bob's first write: it waits behind it (a nested read of her first holder).
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    await alice.ping();
    await alice.ping();
    // Bob gives up and queues a new write at once: a new request, made after alice's second read.
    bob.send({ op: 'cancel', id: bob.id(), target: firstWrite });
    bob.send({ op: 'acquire', id: bob.id(), key: name });
    await seen.saw('queued', bob.session, 2);
    // In a browser: [bob's first (X), alice's second (S), bob's second (X)]; the first leaves, alice's second read
    // is grantable along with her first.
    expect(await within(second.catch((e: unknown) => e), 3000, "alice's second read")).toBe(first?.token);
  });

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

  it('made while an earlier read of the same client waits in the server queue, is granted with it', async () => {
    h = await startHarness();
    const alice = await h.connect();
    const bob = await h.connect();
    const dave = await h.connect();
    const carol = await h.connect();
    const name = 'behind-own';
    const seen = await recorder(carol, name);
    const releaseBob = await holdingUntilReleased(bob, name);
    // Alice's first read waits in the server queue behind bob's write, and holds until the test ends.
    void alice.locks.request(name, { mode: 'shared' }, () => new Promise(() => undefined)).catch(() => undefined);
    await seen.saw('queued', alice.session);
    // Her second read is made now, before dave's write.
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    await alice.ping();
    void dave.locks.request(name, () => 'dave').catch(() => undefined);
    await seen.saw('queued', dave.session);
    releaseBob();
    await seen.saw('acquired', alice.session);
    const firstToken = seen.events.find((e) => e.event === 'acquired' && e.session === alice.session)?.token;
    // In a browser: [alice's first (S), alice's second (S), dave (X)] once bob releases: both reads are granted.
    expect(await within(second.catch((e: unknown) => e), 3000, "alice's second read")).toBe(firstToken);
  });
  it('made while an earlier read of the same client waits in the server queue, still waits behind a writer made before it', async () => {
    h = await startHarness();
    const alice = await h.connect();
    const bob = await h.connect();
    const erin = await h.connect();
    const carol = await h.connect();
    const name = 'behind-own-and-erin';
    const seen = await recorder(carol, name);
    const releaseBob = await holdingUntilReleased(bob, name);
    void alice.locks.request(name, { mode: 'shared' }, () => new Promise(() => undefined)).catch(() => undefined);
    await seen.saw('queued', alice.session);
    // Erin's write is made after alice's first read and before her second.
    const erinController = new AbortController();
    void erin.locks.request(name, { signal: erinController.signal }, () => 'erin').catch(() => undefined);
    await seen.saw('queued', erin.session);
    let secondGranted = false;
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => {
      secondGranted = true;
      return lock?.token;
    });
    await alice.ping();
    releaseBob();
    await seen.saw('acquired', alice.session);
    const firstToken = seen.events.find((e) => e.event === 'acquired' && e.session === alice.session)?.token;
    await alice.ping();
    await alice.ping();
    // In a browser: [alice's first (S), erin (X), alice's second (S)]: the second read waits for erin.
    expect(secondGranted).toBe(false);
    erinController.abort(new Error('erin gave up'));
    expect(await within(second.catch((e: unknown) => e), 3000, "alice's second read")).toBe(firstToken);
  });

  it('made while an earlier read of the same client waits in the server queue, keeps its place ahead of a writer made after it when the earlier read is aborted', async () => {
    h = await startHarness();
    const alice = await h.connect();
    const bob = await h.connect();
    const dave = await h.connect();
    const carol = await h.connect();
    const name = 'abort-ahead-of-own';
    const seen = await recorder(carol, name);
    const releaseBob = await holdingUntilReleased(bob, name);
    const firstController = new AbortController();
    const first = alice.locks.request(name, { mode: 'shared', signal: firstController.signal }, () => 'first');
    await seen.saw('queued', alice.session);
    // Alice's second read is made now, before dave's write.
    const second = alice.locks.request(name, { mode: 'shared' }, (lock) => lock?.token);
    await alice.ping();
    await alice.ping();
    void dave.locks.request(name, () => new Promise(() => undefined)).catch(() => undefined);
    await seen.saw('queued', dave.session);
    const gaveUp = new Error('first gave up');
    firstController.abort(gaveUp);
    expect(await within(first.catch((e: unknown) => e), 2000, "alice's first read")).toBe(gaveUp);
    // In a browser: [alice's second (S), dave (X)] once bob releases: the read is granted, the later write waits.
    releaseBob();
    await seen.saw('acquired', alice.session);
    const grants = seen.events.filter((e) => e.event === 'acquired').map((e) => e.session);
    expect(grants.slice(-1)).toEqual([alice.session]);
    const token = seen.events.find((e) => e.event === 'acquired' && e.session === alice.session)?.token;
    expect(await within(second.catch((e: unknown) => e), 2000, "alice's second read")).toBe(token);
    expect(grants).not.toContain(dave.session);
  });

  it('made while an earlier read of the same client waits in the server queue, does not take its place ahead of a writer made between them when the earlier read is aborted', async () => {
    h = await startHarness();
    const alice = await h.connect();
    const bob = await h.connect();
    const erin = await h.connect();
    const carol = await h.connect();
    const name = 'abort-behind-erin';
    const seen = await recorder(carol, name);
    const releaseBob = await holdingUntilReleased(bob, name);
    const firstController = new AbortController();
    const first = alice.locks.request(name, { mode: 'shared', signal: firstController.signal }, () => 'first');
    await seen.saw('queued', alice.session);
    // Erin's write is made after alice's first read and before her second.
    void erin.locks.request(name, () => new Promise(() => undefined)).catch(() => undefined);
    await seen.saw('queued', erin.session);
    let secondGranted = false;
    void alice.locks
      .request(name, { mode: 'shared' }, () => {
        secondGranted = true;
      })
      .catch(() => undefined);
    await alice.ping();
    await alice.ping();
    firstController.abort(new Error('first gave up'));
    await within(first.catch(() => undefined), 2000, "alice's first read");
    // In a browser: [erin (X), alice's second (S)] once bob releases: erin is granted first.
    releaseBob();
    await seen.saw('acquired', erin.session);
    await alice.ping();
    expect(seen.events.filter((e) => e.event === 'acquired').map((e) => e.session)).not.toContain(alice.session);
    expect(secondGranted).toBe(false);
  });
});
