import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockClient, type Lease } from '@lockwire/client';
import { backoffDelay, reconnectPolicy } from '../src/reconnect.js';
import { defaultResponse, startFakeServer, type FakeServer, type Frame } from './fake-server.js';
import { abortedWith, fastReconnect, graceWelcome, nextEvent, within } from './fixtures.js';

let fake: FakeServer;
const clients: LockClient[] = [];

/** Grants every acquire at once with token `100 + id`. */
function grantAll(frame: Frame) {
  if (frame.op === 'acquire') return { acquired: true, token: 100 + Number(frame.id), expiresAt: null };
  return defaultResponse(frame);
}

async function connect(): Promise<LockClient> {
  const client = await LockClient.connect(fake.url, { reconnect: fastReconnect });
  clients.push(client);
  return client;
}

async function lease(client: LockClient, key: string): Promise<Lease> {
  const granted = await client.acquire(key);
  if (!granted) throw new Error(`${key} not granted`);
  return granted;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await fake.close();
});

describe('resume after a drop (session grace)', () => {
  beforeEach(async () => {
    fake = await startFakeServer({
      respond: grantAll,
      welcome: (n, url) => {
        if (n === 0) return graceWelcome('first');
        const asked = url.searchParams.get('session') === 's0' && url.searchParams.get('resume') === 'first';
        // The second connection resumes s0 and gets back only doc:a.
        return asked
          ? { session: 's0', ...graceWelcome('second', { resumed: true, held: [{ key: 'doc:a', mode: 'exclusive', token: 101, expiresAt: 99 }] }) }
          : graceWelcome('other');
      },
    });
  });

  it('reconnects with session and resume in the URL, keeps the leases listed in held and loses the others', async () => {
    const client = await connect();
    const a = await lease(client, 'doc:a');
    const b = await lease(client, 'doc:b');
    expect([a.token, b.token]).toEqual([101, 102]);
    const reconnected = nextEvent(client, 'reconnect');
    (await fake.connection(0)).terminate();

    expect(await reconnected).toEqual({ session: 's0', previousSession: 's0', resumed: true, attempts: 1 });
    const second = await fake.connection(1);
    expect(second.url.searchParams.get('session')).toBe('s0');
    expect(second.url.searchParams.get('resume')).toBe('first');
    expect(a.held).toBe(true);
    expect(a.signal.aborted).toBe(false);
    expect(a.expiresAt).toBe(99);
    expect(await abortedWith(b.signal)).toMatchObject({ code: 'connection_lost' });
    expect([...client.leases.keys()]).toEqual(['doc:a']);
    expect(client.session).toBe('s0');
  });

  it('leases stay held while the resume is pending, and the next resume uses the newest secret', async () => {
    const client = await connect();
    const a = await lease(client, 'doc:a');
    const down = nextEvent(client, 'disconnect');
    (await fake.connection(0)).terminate();
    await down;
    expect(a.held).toBe(true);
    await nextEvent(client, 'reconnect');
    const again = nextEvent(client, 'reconnect');
    (await fake.connection(1)).terminate();
    await again;
    expect((await fake.connection(2)).url.searchParams.get('resume')).toBe('second');
  });

  it('confirms a resumed welcome with a ping when it has nothing else to send, which spends the secret it resumed with', async () => {
    const client = await connect();
    await lease(client, 'doc:a');
    const reconnected = nextEvent(client, 'reconnect');
    (await fake.connection(0)).terminate();
    // Every lease came back and nothing is watched: no other frame would go out on this connection.
    expect(await reconnected).toMatchObject({ session: 's0', resumed: true });
    const second = await fake.connection(1);
    expect(await second.nextRequest()).toMatchObject({ op: 'ping' });
    expect(second.received).toHaveLength(1);
  });

  it('never closes with 1000 on the way to a resume, and close() closes with 1000 so the server ends the session', async () => {
    const client = await connect();
    await lease(client, 'doc:a');
    const reconnected = nextEvent(client, 'reconnect');
    const first = await fake.connection(0);
    first.close(1012, 'restarting');
    // The client echoes the server's code; a 1000 would end the session it is about to resume.
    expect(await first.closed).toBe(1012);
    expect(await reconnected).toMatchObject({ session: 's0', resumed: true });
    const second = await fake.connection(1);
    expect(second.url.searchParams.get('resume')).toBe('first');
    await client.close();
    expect(await second.closed).toBe(1000);
  });

  it('a hold the server kept that no lease stands for is released after the resume', async () => {
    const client = await connect();
    const a = await lease(client, 'doc:a');
    const down = nextEvent(client, 'disconnect');
    (await fake.connection(0)).terminate();
    await down;
    // Released while offline: the server still holds it for the session.
    await a.release();
    await nextEvent(client, 'reconnect');
    expect(await (await fake.connection(1)).nextRequest('release')).toMatchObject({ key: 'doc:a' });
    expect(client.leases.size).toBe(0);
  });
});

describe('a resume that gives back a hold under another token', () => {
  beforeEach(async () => {
    fake = await startFakeServer({
      respond: grantAll,
      // The session is back, holding doc:a under a newer grant (token 202) whose reply was lost in the drop.
      welcome: (n) =>
        n === 0
          ? graceWelcome('first')
          : { session: 's0', ...graceWelcome('second', { resumed: true, held: [{ key: 'doc:a', mode: 'exclusive', token: 202, expiresAt: null }] }) },
    });
  });

  it('loses the lease and releases the kept hold, as no lease stands for it', async () => {
    const client = await connect();
    const a = await lease(client, 'doc:a');
    expect(a.token).toBe(101);
    const reconnected = nextEvent(client, 'reconnect');
    (await fake.connection(0)).terminate();
    expect(await reconnected).toMatchObject({ resumed: true });
    expect(await abortedWith(a.signal)).toMatchObject({ code: 'connection_lost' });
    expect(client.leases.size).toBe(0);
    expect(await (await fake.connection(1)).nextRequest('release')).toMatchObject({ key: 'doc:a' });
  });

  it('sends that release before a Web Lock woken by the lost lease asks for the key again', async () => {
    const client = await connect();
    let granted!: () => void;
    const isGranted = new Promise<void>((resolve) => (granted = resolve));
    const holding = client.locks
      .request('doc:a', () => {
        granted();
        return new Promise(() => undefined);
      })
      .catch((error: unknown) => error);
    await isGranted;
    // Waits in the client behind its own holder; the holder's loss lets it ask the server.
    const next = client.locks.request('doc:a', (lock) => lock?.token);
    (await fake.connection(0)).terminate();

    expect(await within(holding)).toMatchObject({ code: 'connection_lost' });
    const second = await fake.connection(1);
    // The ping that follows the resume (it waits for the reasons of lost leases) is beside the point here.
    const besidesPing = async () => {
      for (;;) {
        const frame = await second.nextRequest();
        if (frame.op !== 'ping') return frame;
      }
    };
    const first = await besidesPing();
    const after = await besidesPing();
    expect([first, after].map((frame) => [frame.op, frame.key])).toEqual([
      ['release', 'doc:a'],
      ['acquire', 'doc:a'],
    ]);
    expect(await within(next)).toBe(100 + Number(after.id));
  });
});

describe('a refused resume', () => {
  it('aborts every lease when the welcome says resumed: false', async () => {
    fake = await startFakeServer({
      respond: grantAll,
      welcome: (n) => (n === 0 ? graceWelcome('first') : { session: 'fresh', ...graceWelcome('new') }),
    });
    const client = await connect();
    const a = await lease(client, 'doc:a');
    const reconnected = nextEvent(client, 'reconnect');
    (await fake.connection(0)).terminate();
    expect(await reconnected).toMatchObject({ session: 'fresh', previousSession: 's0', resumed: false });
    expect(await abortedWith(a.signal)).toMatchObject({ code: 'connection_lost' });
    expect(client.session).toBe('fresh');
  });

  it('loses the parked leases once the grace has run out without a reconnect', async () => {
    fake = await startFakeServer({ respond: grantAll, welcome: () => graceWelcome('first', { grace: 20 }) });
    const client = await LockClient.connect(fake.url, { reconnect: { initialDelay: 60_000 } });
    clients.push(client);
    const a = await lease(client, 'doc:a');
    (await fake.connection(0)).terminate();
    expect(await abortedWith(a.signal)).toMatchObject({ code: 'connection_lost' });
    expect(client.state).toBe('reconnecting');
  });

  it('without session grace the leases are lost at the drop and the reconnect opens a fresh session', async () => {
    fake = await startFakeServer({ respond: grantAll });
    const client = await connect();
    const a = await lease(client, 'doc:a');
    const reconnected = nextEvent(client, 'reconnect');
    (await fake.connection(0)).terminate();
    expect(await abortedWith(a.signal)).toMatchObject({ code: 'connection_lost' });
    await reconnected;
    expect((await fake.connection(1)).url.search).toBe('');
  });
});

describe('closes that end reconnecting', () => {
  for (const [code, why] of [
    [1008, 'a policy close (credentials, abuse)'],
    [4001, 'a superseded session'],
  ] as const) {
    it(`does not reconnect after ${why} (${code})`, async () => {
      fake = await startFakeServer();
      const client = await connect();
      const closed = nextEvent(client, 'close');
      const server = await fake.connection(0);
      server.close(code, 'bye');
      expect(await closed).toMatchObject({ code, byClient: false });
      expect(client.state).toBe('closed');
      expect(fake.connections).toHaveLength(1);
    });
  }
});

describe('backoff', () => {
  it('grows by factor from initialDelay up to maxDelay, and jitter takes off up to its share', () => {
    const policy = reconnectPolicy({ initialDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5 });
    if (!policy) throw new Error('reconnect is on');
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(policy, attempt, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(backoffDelay(policy, 3, () => 0.999999)).toBeCloseTo(200, 3);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(300);
  });

  it('is on by default, off with false, and refuses negative or out-of-range values', () => {
    expect(reconnectPolicy(undefined)).toEqual({ initialDelay: 100, maxDelay: 10_000, factor: 2, jitter: 0.5, maxAttempts: Infinity });
    expect(reconnectPolicy(false)).toBeNull();
    expect(() => reconnectPolicy({ initialDelay: -1 })).toThrow(RangeError);
    expect(() => reconnectPolicy({ jitter: 2 })).toThrow(RangeError);
  });

  it('refuses delays setTimeout cannot wait (above 2^31 - 1 ms, Infinity) and values that are not numbers', () => {
    // setTimeout waits 1 ms for any of these: the client would retry at once instead of after a long wait.
    expect(() => reconnectPolicy({ maxDelay: Infinity })).toThrow(/reconnect\.maxDelay must be a number of ms from 0 to 2147483647, got Infinity/);
    expect(() => reconnectPolicy({ initialDelay: 3e9 })).toThrow(RangeError);
    expect(() => reconnectPolicy({ factor: Infinity })).toThrow(RangeError);
    expect(() => reconnectPolicy({ maxDelay: '100' as unknown as number })).toThrow(/got string/);
    expect(reconnectPolicy({ initialDelay: 2_147_483_647, maxDelay: 2_147_483_647, maxAttempts: Infinity })).toMatchObject({
      maxDelay: 2_147_483_647,
    });
  });
});
