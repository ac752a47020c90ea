import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLockServer } from '@lockwire/server';
import { LockClient, LockError, type CloseInfo } from '@lockwire/client';
import { abortedWith, nextEvent, recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;

beforeEach(async () => {
  h = await startHarness();
});
afterEach(() => h.close());

describe('connection', () => {
  it('connect resolves after the welcome, with the session and the announced limits', async () => {
    const client = await h.connect();
    expect(client.session).toMatch(/.+/);
    expect(client.state).toBe('open');
    expect(client.server).toMatch(/^lockwire\//);
    expect(client.limits).toMatchObject({ maxPayload: 65536, maxKeyLength: 256 });
    expect(await client.ping()).toBe(h.clock.now());
  });

  it('numbers requests 1, 2, 3 on each connection', async () => {
    const { transport, sent } = recordingTransport();
    const client = await h.connect({ transport });
    await client.ping();
    await client.status('a');
    await client.list();
    expect(sent.map((frame) => frame.id)).toEqual([1, 2, 3]);
  });

  it('connecting to a port nobody listens on rejects with connection_closed', async () => {
    const gone = await createLockServer({ port: 0, heartbeatInterval: 0 });
    const url = gone.url;
    await gone.close();
    const error = await LockClient.connect(url).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'connection_closed' });
  });

  it('server errors reject with a LockError carrying the wire code', async () => {
    const client = await h.connect();
    await expect(client.releaseLock('never-held')).rejects.toMatchObject({
      name: 'LockError',
      code: 'not_holder',
    });
    await expect(client.acquire('x'.repeat(257))).rejects.toMatchObject({ code: 'bad_request' });
    expect(client.state).toBe('open');
  });

  it('close() is idempotent and rejects pending calls with connection_closed', async () => {
    const holder = await h.connect();
    const client = await h.connect();
    await holder.acquire('doc:1');
    const pending = client.acquire('doc:1').catch((e: unknown) => e);
    await client.ping();
    const closeEvent = nextEvent(client, 'close');

    const first = client.close();
    const second = client.close();
    expect(second).toBe(first);
    await within(first);

    const error = await pending;
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'connection_closed', close: { byClient: true } });
    expect(await closeEvent).toMatchObject({ byClient: true });
    expect(client.state).toBe('closed');
    await expect(client.ping()).rejects.toMatchObject({ code: 'connection_closed' });
    // The server dropped the closed session's queued request.
    expect((await holder.status('doc:1')).queue).toEqual([]);
  });

  it("every call on a closed client rejects with connection_closed whose close is the client's own close", async () => {
    const client = await h.connect();
    await client.close();
    const calls: Promise<unknown>[] = [
      client.ping(),
      client.acquire('doc:2'),
      client.status('doc:2'),
      client.locks.request('doc:2', () => 1),
      client.locks.query(),
    ];
    for (const call of calls) {
      const error = await within(call.catch((e: unknown) => e));
      expect(error).toBeInstanceOf(LockError);
      expect(error).toMatchObject({ code: 'connection_closed', close: { code: 1000, byClient: true } });
      expect(typeof (error as LockError).close?.reason).toBe('string');
    }
  });

  it("a call made while close() is under way rejects with connection_closed carrying the client's close", async () => {
    const client = await h.connect();
    const closing = client.close();
    const error = await within(client.ping().catch((e: unknown) => e));
    expect(error).toMatchObject({ code: 'connection_closed', close: { code: 1000, byClient: true } });
    await within(closing);
  });

  it('closing the client aborts its leases with connection_lost and the server releases them', async () => {
    const client = await h.connect();
    const observer = await h.connect();
    const lease = await client.acquire('doc:2');
    await client.close();
    expect(lease?.signal.reason).toMatchObject({ code: 'connection_lost' });
    expect(lease?.held).toBe(false);
    await lease?.release();
    expect((await observer.status('doc:2')).locked).toBe(false);
  });

  it("emits 'close' once, with its own close info, when a lease's abort listener calls close() again during close()", async () => {
    const client = await h.connect();
    const lease = await client.acquire('doc:5');
    let again: Promise<void> | undefined;
    lease?.signal.addEventListener('abort', () => {
      again = client.close();
    });
    const closes: CloseInfo[] = [];
    client.on('close', (info) => closes.push(info));
    const first = client.close();
    await within(first);
    expect(again).toBe(first);
    expect(closes).toEqual([{ code: 1000, reason: 'client closed', byClient: true }]);
    expect(client.state).toBe('closed');
  });

  it('a server shutdown answers pending calls shutting_down and aborts every lease with connection_lost', async () => {
    const client = await h.connect({ reconnect: false });
    const lease = await client.acquire('doc:3');
    // Waiting on its own hold: only the shutdown can end this call.
    const pending = client.waitForLock('doc:3').catch((e: unknown) => e);
    await client.ping();
    const closed = new Promise<CloseInfo>((resolve) => client.on('close', resolve));

    await h.server.close();
    const reason = await abortedWith(lease?.signal ?? AbortSignal.abort());
    expect(reason).toBeInstanceOf(LockError);
    expect(reason).toMatchObject({ code: 'connection_lost', close: { code: 1001, byClient: false } });
    expect(await within(closed)).toMatchObject({ code: 1001 });
    const error = await within(pending);
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'shutting_down' });
    expect(client.state).toBe('closed');
    expect(client.leases.size).toBe(0);
    await expect(client.status('doc:3')).rejects.toMatchObject({ code: 'connection_closed' });
  });

  it('an aborted connect signal rejects with its reason', async () => {
    const reason = new Error('no time');
    await expect(LockClient.connect(h.server.url, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });
});
