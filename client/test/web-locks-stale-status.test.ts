import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient, type Lock } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeConnection, type FakeServer, type Frame } from './fake-server.js';
import { within } from './fixtures.js';

const NAME = 'doc:r';
const TOKEN = 7;

let fake: FakeServer;
const clients: LockClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await fake.close();
});

/** A request of another client waiting in the server queue of the name, as `status` and snapshots list it. */
function writer(session: string, seq: number): Record<string, unknown> {
  return { session, mode: 'exclusive', since: 1000 + seq, meta: null, seq };
}

/** The name held shared by the client (session `s0`), with `queue` waiting behind. */
function statusOf(queue: readonly Record<string, unknown>[]): Record<string, unknown> {
  return {
    key: NAME,
    locked: true,
    mode: 'shared',
    holders: [{ session: 's0', mode: 'shared', token: TOKEN, since: 900, expiresAt: null, meta: null }],
    queue,
    heldByYou: true,
  };
}

/** The watch event of `session`'s queued request leaving the name's queue. */
function dequeued(session: string, waiters: number): Record<string, unknown> {
  return { type: 'event', key: NAME, event: 'dequeued', session, mode: 'exclusive', meta: null, holders: 1, waiters, at: 2000 };
}

const BOB = writer('bob', 1);
const CAROL = writer('carol', 2);

/**
 * Grants acquires at once (shared, token 7) and answers the client's watch
 * with a snapshot listing bob's and carol's writers; `status` is left to
 * the test, which times each answer against the watch's events.
 */
function respond(frame: Frame): Record<string, unknown> | undefined {
  if (frame.op === 'acquire') return { acquired: true, token: TOKEN, expiresAt: null };
  if (frame.op === 'watch') return { locks: [statusOf([BOB, CAROL])], truncated: false };
  if (frame.op === 'status') return undefined;
  return defaultResponse(frame);
}

const statusFrames = (connection: FakeConnection) => connection.received.filter((frame) => frame.op === 'status');

describe('client.locks: a shared request behind other clients\' queued writers, a status answer older than an event', () => {
  beforeEach(async () => {
    fake = await startFakeServer({ respond });
  });

  it('asks status again when the writer it still lists left while that status was out, and is granted on the next answer only', async () => {
    const client = await LockClient.connect(fake.url, { reconnect: false });
    clients.push(client);
    const connection = await fake.connection(0);

    let firstGranted!: (lock: Lock | null) => void;
    const firstLock = new Promise<Lock | null>((resolve) => (firstGranted = resolve));
    void client.locks
      .request(NAME, { mode: 'shared' }, (lock) => {
        firstGranted(lock);
        return new Promise(() => undefined);
      })
      .catch(() => undefined);
    expect((await within(firstLock))?.token).toBe(TOKEN);

    let granted = false;
    const second = client.locks.request(NAME, { mode: 'shared' }, (lock) => {
      granted = true;
      return lock?.token;
    });
    second.catch(() => undefined);

    // The first look finds bob's and carol's writers ahead: the request waits and watches the name.
    const first = await connection.nextRequest('status');
    connection.reply(first.id, statusOf([BOB, CAROL]));
    await connection.nextRequest('watch');
    await client.ping();
    expect(granted).toBe(false);

    // Carol leaves: the client asks status once.
    connection.send(dequeued('carol', 1));
    const asked = await connection.nextRequest('status');
    // Bob leaves while that status is out, and its answer, read before his leaving, still lists him.
    connection.send(dequeued('bob', 0));
    connection.reply(asked.id, statusOf([BOB]));

    // That answer may predate the event: the client asks again instead of waiting on the watch.
    const again = await connection.nextRequest('status');
    await client.ping();
    expect(granted).toBe(false);
    expect(statusFrames(connection)).toHaveLength(3);

    connection.reply(again.id, statusOf([]));
    expect(await within(second)).toBe(TOKEN);
    expect(statusFrames(connection)).toHaveLength(3);
  });
});
