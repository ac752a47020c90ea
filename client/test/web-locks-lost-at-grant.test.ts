import { afterEach, describe, expect, it } from 'vitest';
import { createWsTransport, LockClient, type TransportFactory } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeServer } from './fake-server.js';
import { nextEvent, startHarness, within, type Harness } from './fixtures.js';

/**
 * A ws transport that holds back the reply granting `key` until the next
 * `lost` of it arrives, then hands the client both in one go: the grant and
 * its loss in the same read, before any microtask runs. `granted()` resolves
 * once the grant is held back.
 */
function grantWithLossTransport(key: string): { transport: TransportFactory; granted: Promise<void> } {
  const inner = createWsTransport();
  let grantHeld: () => void = () => undefined;
  const granted = new Promise<void>((resolve) => (grantHeld = resolve));
  const acquires = new Set<unknown>();
  const transport: TransportFactory = (url, handlers) => {
    let held: string | undefined;
    const socket = inner(url, {
      ...handlers,
      message(text) {
        const frame = text === null ? undefined : (JSON.parse(text) as Record<string, unknown>);
        if (frame?.type === 'reply' && acquires.has(frame.id) && frame.acquired === true && held === undefined) {
          held = text ?? undefined;
          grantHeld();
          return;
        }
        if (held !== undefined && frame?.type === 'lost' && frame.key === key) {
          handlers.message(held);
          held = undefined;
        }
        handlers.message(text);
      },
    });
    return {
      send(text) {
        const frame = JSON.parse(text) as Record<string, unknown>;
        if (frame.op === 'acquire' && frame.key === key) acquires.add(frame.id);
        socket.send(text);
      },
      close: (code, reason) => socket.close(code, reason),
    };
  };
  return { transport, granted: within(granted, 2000, `the grant of ${key}`) };
}

/** What a request settled with: its value, or the error it rejected with (handled from the start). */
function outcomeOf(request: Promise<unknown>): Promise<unknown> {
  return request.then(
    (value) => ({ resolved: value }),
    (error: unknown) => error,
  );
}

describe('client.locks when the lock is lost in the same read as its grant', () => {
  let fake: FakeServer | undefined;
  let h: Harness | undefined;
  const clients: LockClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await fake?.close();
    await h?.close();
    fake = undefined;
    h = undefined;
  });

  /**
   * A fake server that grants the n-th acquire (0-based) with `tokens[n]`;
   * the first one is stolen right behind its grant, in the same tick.
   */
  async function firstGrantStolen(tokens: number[]): Promise<LockClient> {
    let acquires = 0;
    fake = await startFakeServer({
      respond: (frame, connection) => {
        // Nobody waits in the server queue: a shared request may share a shared hold of its client.
        if (frame.op === 'status') return { key: frame.key, locked: true, mode: 'shared', holders: [], queue: [] };
        if (frame.op !== 'acquire') return defaultResponse(frame);
        const n = acquires++;
        const token = tokens[n] ?? 100 + n;
        connection.reply(frame.id, { acquired: true, token, expiresAt: null });
        if (n === 0) connection.send({ type: 'lost', key: frame.key, token, reason: 'stolen' });
        return undefined;
      },
    });
    const client = await LockClient.connect(fake.url, { reconnect: false });
    clients.push(client);
    return client;
  }

  it('the request rejects with an AbortError and never calls back', async () => {
    const client = await firstGrantStolen([7]);
    const lost = nextEvent(client, 'lost');
    let called = false;
    const request = outcomeOf(
      client.locks.request('doc:x', () => {
        called = true;
        return 'ran';
      }),
    );
    expect(await lost).toMatchObject({ key: 'doc:x', token: 7, reason: 'stolen' });
    expect(await within(request)).toMatchObject({ name: 'AbortError' });
    expect(called).toBe(false);
  });

  it("a shared request made after it gets a hold of its own rather than sharing the lost one's", async () => {
    const client = await firstGrantStolen([7, 8]);
    let firstCalled: () => void = () => undefined;
    const called = new Promise<void>((resolve) => (firstCalled = resolve));
    let secondDone: () => void = () => undefined;
    const second = new Promise<void>((resolve) => (secondDone = resolve));
    const firstOutcome = outcomeOf(
      client.locks.request('doc:x', { mode: 'shared' }, async () => {
        firstCalled();
        await second;
      }),
    );
    // Until the first request is decided: called back (holding) or rejected.
    await within(Promise.race([called, firstOutcome]), 2000, 'the first request to be decided');
    const token = await within(client.locks.request('doc:x', { mode: 'shared' }, (lock) => lock?.token));
    secondDone();
    expect(token).toBe(8);
    expect(await within(firstOutcome)).toMatchObject({ name: 'AbortError' });
    expect(fake?.connections[0]?.received.filter((frame) => frame.op === 'acquire')).toHaveLength(2);
  });

  it('on the real server, a steal read together with the grant rejects the robbed request with an AbortError', async () => {
    h = await startHarness();
    const { transport, granted } = grantWithLossTransport('doc:z');
    const carol = await h.connect({ transport });
    const dave = await h.connect();
    const lost = nextEvent(carol, 'lost');
    let called = false;
    const request = outcomeOf(
      carol.locks.request('doc:z', () => {
        called = true;
        return 'ran';
      }),
    );
    await granted;
    const steal = await within(dave.acquire('doc:z', { steal: true }));
    expect(await lost).toMatchObject({ key: 'doc:z', reason: 'stolen' });
    expect(await within(request)).toMatchObject({ name: 'AbortError' });
    expect(called).toBe(false);
    const status = await dave.status('doc:z');
    expect(status.holders.map((holder) => [holder.session, holder.token])).toEqual([[dave.session, steal?.token]]);
  });
});
