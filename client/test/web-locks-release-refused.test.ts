import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let alice: LockClient;
let bob: LockClient;
/** Resolves at the next release the server refused, before the client read the reply. */
let releaseRefused: () => Promise<void>;
/** Runs when the server refuses a release, before the client reads the reply (the release is still on its way). */
let onReleaseRefused: () => void;
/** Runs when the server accepts a release, before the client reads the reply (and so before it sends more). */
let onReleaseAccepted: () => void;
/** Resolves at the next reply granting `key`, before the client read it. */
let granted: (key: string) => Promise<void>;

beforeEach(async () => {
  // One frame per 100 ms of the manual server clock, burst 1: the release after an acquire is refused.
  h = await startHarness({ limits: { rateLimit: 10, rateBurst: 1 } });
  const refusals: (() => void)[] = [];
  const grants: { key: string; resolve: () => void }[] = [];
  onReleaseRefused = () => undefined;
  onReleaseAccepted = () => undefined;
  const { transport, sent } = recordingTransport((frame) => {
    if (frame.type !== 'reply') return;
    const request = sent.find((f) => f.id === frame.id);
    const error = frame.error as { code?: string } | undefined;
    if (request?.op === 'release' && error?.code === 'rate_limited') {
      onReleaseRefused();
      for (const resolve of refusals.splice(0)) resolve();
    }
    if (request?.op === 'release' && frame.released === true) onReleaseAccepted();
    if (request?.op === 'acquire' && frame.acquired === true) {
      for (const grant of grants.filter((g) => g.key === request.key)) {
        grants.splice(grants.indexOf(grant), 1);
        grant.resolve();
      }
    }
  });
  releaseRefused = () =>
    within(new Promise<void>((resolve) => refusals.push(resolve)), 2000, 'a release the server refused');
  granted = (key) =>
    within(new Promise<void>((resolve) => grants.push({ key, resolve })), 2000, `the server's grant of ${key}`);
  alice = await h.connect({ transport });
  bob = await h.connect();
});
afterEach(async () => {
  await h.close();
});

/** Ends a request of `alice` for `name` whose release the server refuses; resolves once it was refused. */
async function endWithRefusedRelease(name: string): Promise<void> {
  const refused = releaseRefused();
  expect(await within(alice.locks.request(name, (lock) => lock?.name))).toBe(name);
  await refused;
}

describe('client.locks while the server keeps refusing the release of a name', () => {
  it('a request for another, free name is called back as soon as the server grants it', async () => {
    await endWithRefusedRelease('y');
    // One frame of budget: the acquire of z takes it, and the re-sent release of y stays refused.
    h.clock.advance(100);
    let laterCalled = false;
    const later = alice.locks.request('y', () => {
      laterCalled = true;
      return 'y again';
    });
    // Rejected with connection_closed when the harness closes the client.
    void later.catch(() => undefined);
    const zGranted = granted('z');
    const z = alice.locks.request('z', (lock) => lock?.name);
    await zGranted;

    expect(await within(z, 2000, "z's callback")).toBe('z');
    expect(laterCalled).toBe(false);
    expect((await bob.status('y')).holders.map((holder) => holder.session)).toEqual([alice.session]);
  });

  it('the next request for the refused name waits until the server accepted the release, and is granted then', async () => {
    await endWithRefusedRelease('y');
    let laterCalled = false;
    const later = alice.locks.request('y', (lock) => {
      laterCalled = true;
      return lock?.name;
    });
    // The release accepted, one more frame lets the waiting request's acquire in.
    onReleaseAccepted = () => h.clock.advance(100);
    expect(laterCalled).toBe(false);
    h.clock.advance(100);

    expect(await within(later, 3000, 'the request made while the release was refused')).toBe('y');
    expect(laterCalled).toBe(true);
  });

  it('an ifAvailable request for the refused name gets null at once and holds back no request made after it', async () => {
    await endWithRefusedRelease('y');
    h.clock.advance(100);
    const ifAvailable = alice.locks.request('y', { ifAvailable: true }, (lock) => lock);
    const z = alice.locks.request('z', (lock) => lock?.name);

    expect(await within(ifAvailable, 2000, 'the ifAvailable request')).toBeNull();
    expect(await within(z, 2000, "z's callback")).toBe('z');
  });

  it('a request made while the release is on its way, which the server then refuses, holds back no request of another name', async () => {
    let later: Promise<string> | undefined;
    onReleaseRefused = () => {
      onReleaseRefused = () => undefined;
      later = alice.locks.request('y', () => 'y again');
      void later.catch(() => undefined);
    };
    await endWithRefusedRelease('y');
    h.clock.advance(100);
    const z = alice.locks.request('z', (lock) => lock?.name);

    expect(await within(z, 2000, "z's callback")).toBe('z');
    expect(later).toBeDefined();
    expect((await bob.status('y')).holders.map((holder) => holder.session)).toEqual([alice.session]);
  });
});
