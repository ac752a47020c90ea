import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient, type Lease } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeConnection, type FakeServer, type Frame } from './fake-server.js';
import { abortedWith, fastReconnect, graceWelcome, nextEvent } from './fixtures.js';

let fake: FakeServer;
const clients: LockClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await fake.close();
});

/** Grants every acquire at once with token `100 + id`; leaves the pings of resumed connections to the test. */
function respond(frame: Frame, connection: FakeConnection) {
  if (frame.op === 'acquire') return { acquired: true, token: 100 + Number(frame.id), expiresAt: null };
  if (frame.op === 'ping' && connection.url.searchParams.has('resume')) return undefined;
  return defaultResponse(frame);
}

/** Refuses request `id` as the server's intake does when the session sends faster than allowed. */
function refuseRateLimited(connection: FakeConnection, id: unknown): void {
  connection.send({ type: 'reply', id, ok: false, error: { code: 'rate_limited', message: 'slow down' } });
}

async function lease(client: LockClient, key: string): Promise<Lease> {
  const granted = await client.acquire(key);
  if (!granted) throw new Error(`${key} not granted`);
  return granted;
}

/** A client holding doc:a, doc:b and doc:c (tokens 101-103) whose connection dropped and was resumed with doc:a alone. */
async function resumedWithA() {
  const client = await LockClient.connect(fake.url, { reconnect: fastReconnect });
  clients.push(client);
  const leases = [await lease(client, 'doc:a'), await lease(client, 'doc:b'), await lease(client, 'doc:c')] as const;
  const reconnected = nextEvent(client, 'reconnect');
  (await fake.connection(0)).terminate();
  expect(await reconnected).toMatchObject({ resumed: true });
  const second = await fake.connection(1);
  const ping = await second.nextRequest('ping');
  return { client, leases, second, ping };
}

describe('leases a resume did not give back', () => {
  beforeEach(async () => {
    fake = await startFakeServer({
      respond,
      welcome: (n) =>
        n === 0
          ? graceWelcome('first')
          : { session: 's0', ...graceWelcome(`secret${n}`, { resumed: true, held: [{ key: 'doc:a', mode: 'exclusive', token: 101, expiresAt: null }] }) },
    });
  });

  it('take the reason of the lost the server sends before its answer to the ping that follows the resume', async () => {
    const { client, leases, second, ping } = await resumedWithA();
    const [a, b, c] = leases;
    const lost = nextEvent(client, 'lost');
    // Until the server has said why, the leases it did not give back are out of client.leases but not yet aborted.
    expect([...client.leases.keys()]).toEqual(['doc:a']);
    expect(b.signal.aborted).toBe(false);
    second.send({ type: 'lost', key: 'doc:b', token: 102, reason: 'expired' });
    expect(await abortedWith(b.signal)).toMatchObject({ code: 'expired' });
    expect(await lost).toEqual({ key: 'doc:b', token: 102, reason: 'expired' });
    expect(c.signal.aborted).toBe(false);
    second.reply(ping.id, { at: 0 });
    // No lost named doc:c before the pong: the server has no reason to give.
    expect(await abortedWith(c.signal)).toMatchObject({ code: 'connection_lost' });
    expect(a.held).toBe(true);
  });

  it('ignore a lost naming another token, and are lost with connection_lost when the connection drops before the pong', async () => {
    const { leases, second } = await resumedWithA();
    const [a, b, c] = leases;
    second.send({ type: 'lost', key: 'doc:b', token: 999, reason: 'stolen' });
    second.send({ type: 'lost', key: 'doc:c', token: 103, reason: 'revoked' });
    expect(await abortedWith(c.signal)).toMatchObject({ code: 'revoked' });
    expect(b.signal.aborted).toBe(false);
    second.terminate();
    expect(await abortedWith(b.signal)).toMatchObject({ code: 'connection_lost' });
    // doc:a is parked for the next resume, as on any drop.
    expect(a.signal.aborted).toBe(false);
  });

  it('wait past a ping the server refuses, which is no barrier, and take the reason of the lost that comes after it', async () => {
    const { leases, second, ping } = await resumedWithA();
    const [a, b, c] = leases;
    // A refused frame is answered at intake, before the session's owed `lost` frames (server/src/session-frame.ts).
    refuseRateLimited(second, ping.id);
    const retried = await second.nextRequest('ping');
    expect(retried.id).not.toBe(ping.id);
    expect(b.signal.aborted).toBe(false);
    // On the Redis store a loss may reach the session's node after the welcome (docs/protocol.md, Grace and lost).
    second.send({ type: 'lost', key: 'doc:b', token: 102, reason: 'expired' });
    expect(await abortedWith(b.signal)).toMatchObject({ code: 'expired' });
    expect(c.signal.aborted).toBe(false);
    second.reply(retried.id, { at: 0 });
    expect(await abortedWith(c.signal)).toMatchObject({ code: 'connection_lost' });
    expect(a.held).toBe(true);
  });

  it('ask the ping again after each refusal, and keep the reason of a lost that comes between two refusals', async () => {
    const { client, leases, second, ping } = await resumedWithA();
    const [a, b, c] = leases;
    refuseRateLimited(second, ping.id);
    const again = await second.nextRequest('ping');
    second.send({ type: 'lost', key: 'doc:b', token: 102, reason: 'stolen' });
    refuseRateLimited(second, again.id);
    const third = await second.nextRequest('ping');
    expect(await abortedWith(b.signal)).toMatchObject({ code: 'stolen' });
    // Two refusals later the server still owes nothing it has not said: doc:c waits for the pong.
    expect(c.signal.aborted).toBe(false);
    expect([...client.leases.keys()]).toEqual(['doc:a']);
    second.reply(third.id, { at: 0 });
    expect(await abortedWith(c.signal)).toMatchObject({ code: 'connection_lost' });
    expect(a.held).toBe(true);
    expect(second.received.filter((frame) => frame.op === 'ping')).toHaveLength(3);
  });
});
