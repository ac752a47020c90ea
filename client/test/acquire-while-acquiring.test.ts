import { afterEach, expect, it } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { recordingTransport, startHarness, within, type Harness } from './fixtures.js';

// The server refuses a second request of a session for a key it already waits for. An acquire of a key the client
// is already acquiring waits for that acquire and then goes on as on a key the client holds (or as a first acquire
// when that one got nothing), so two calls give the same answer whether the key is free or held elsewhere.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function busyKey(key: string): Promise<{ other: LockClient; client: LockClient; sent: Record<string, unknown>[] }> {
  h = await startHarness();
  const other = await h.connect();
  await other.acquire(key);
  const { transport, sent } = recordingTransport();
  const client = await h.connect({ transport });
  return { other, client, sent };
}

const acquiresOf = (sent: Record<string, unknown>[], key: string) => sent.filter((f) => f.op === 'acquire' && f.key === key);

it('answers two concurrent acquires of a key held elsewhere with the same lease once it is granted', async () => {
  const { other, client, sent } = await busyKey('busy');
  let queued!: () => void;
  const isQueued = new Promise<void>((resolve) => (queued = resolve));
  const first = client.acquire('busy', { onQueued: () => queued() });
  const second = client.acquire('busy');
  await within(isQueued, 2000, 'the first acquire queued');
  // The second waits on the client while the first is queued: the server has one request of the session.
  expect(acquiresOf(sent, 'busy')).toHaveLength(1);
  await other.releaseLock('busy');
  const [a, b] = await within(Promise.all([first, second]));
  expect(a).not.toBeNull();
  expect(b).toBe(a);
  const status = await client.status('busy');
  expect(status.heldByYou).toBe(true);
  expect(status.holders).toEqual([expect.objectContaining({ token: a?.token })]);
});

it('runs two concurrent withLock calls of a key held elsewhere, and leaves it released', async () => {
  const { other, client } = await busyKey('job');
  const one = client.withLock('job', () => 1);
  const two = client.withLock('job', () => 2);
  await client.ping();
  await other.releaseLock('job');
  expect(await within(Promise.all([one, two]))).toEqual([1, 2]);
  expect((await other.status('job')).locked).toBe(false);
});

it('answers a try-once acquire of a key whose acquire is queued with null, at once', async () => {
  const { other, client, sent } = await busyKey('busy');
  const first = client.acquire('busy');
  expect(await within(client.acquire('busy', { acquireTimeout: 0 }))).toBeNull();
  expect(acquiresOf(sent, 'busy')).toHaveLength(1);
  await other.releaseLock('busy');
  expect(await within(first)).not.toBeNull();
});

it('answers a try-once acquire of a free key whose acquire is in flight with that acquire lease', async () => {
  h = await startHarness();
  const client = await h.connect();
  const [a, b] = await within(Promise.all([client.acquire('free'), client.acquire('free', { acquireTimeout: 0 })]));
  expect(a).not.toBeNull();
  expect(b).toBe(a);
});

it('counts the wait against acquireTimeout, and sends a waiting acquire itself when the first got nothing', async () => {
  const { other, client, sent } = await busyKey('busy');
  let queued!: () => void;
  const isQueued = new Promise<void>((resolve) => (queued = resolve));
  const first = client.acquire('busy', { acquireTimeout: 1000, onQueued: () => queued() });
  await within(isQueued, 2000, 'the first acquire queued');
  // Its acquireTimeout runs out in real time while it waits on the client: null, and nothing sent.
  expect(await within(client.acquire('busy', { acquireTimeout: 20 }), 2000)).toBeNull();
  const third = client.acquire('busy');
  // The first times out on the server's clock: the third, waiting for it, is then sent and queued itself.
  h!.clock.advance(1000);
  expect(await within(first)).toBeNull();
  await within(
    (async () => {
      while (acquiresOf(sent, 'busy').length < 2) await client.ping();
    })(),
  );
  expect(acquiresOf(sent, 'busy')).toHaveLength(2);
  await other.releaseLock('busy');
  expect(await within(third)).not.toBeNull();
});

it('rejects an acquire aborted while it waits for the one in flight with the reason, leaving that one queued', async () => {
  const { other, client, sent } = await busyKey('busy');
  const first = client.acquire('busy');
  const controller = new AbortController();
  const second = client.acquire('busy', { signal: controller.signal });
  await client.ping();
  controller.abort(new Error('gave up'));
  await expect(within(second)).rejects.toThrow('gave up');
  expect(acquiresOf(sent, 'busy')).toHaveLength(1);
  expect(sent.filter((f) => f.op === 'cancel')).toHaveLength(0);
  await other.releaseLock('busy');
  expect(await within(first)).not.toBeNull();
});
