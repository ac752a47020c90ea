import { afterEach, describe, expect, it } from 'vitest';
import { LockError, type LockClient } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { fastReconnect, holding, nextEvent, recordingTransport, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let proxy: TcpProxy | undefined;
afterEach(async () => {
  await h.close();
  await proxy?.close();
  proxy = undefined;
});

/** A client connected to `url` whose requests' `queued` frames resolve `queued()`, one per call. */
async function watchingQueue(url: string, options: Parameters<Harness['connect']>[0] = {}) {
  const waiters: (() => void)[] = [];
  const { transport } = recordingTransport((frame) => {
    if (frame.type === 'queued') waiters.shift()?.();
  });
  const client = await h.connectTo(url, { ...options, transport });
  const queued = () => within(new Promise<void>((resolve) => waiters.push(resolve)), 2000, 'a queued frame');
  return { client, queued };
}

describe('client.locks when the connection drops', () => {
  it('with session grace, a held request keeps the lock across the drop and the resume, and a request waiting in the server queue rejects with connection_lost', async () => {
    h = await startHarness({ sessionGrace: 30_000 });
    proxy = await startTcpProxy(h.server.port);
    const { client: alice, queued } = await watchingQueue(proxy.url(h.server.url), { reconnect: fastReconnect });
    const bob = await h.connect();
    let end!: () => void;
    const { lock, done } = await holding(alice, 'doc:1', new Promise<void>((resolve) => (end = resolve)));
    await bob.acquire('doc:2');
    const isQueued = queued();
    const waiting = alice.locks.request('doc:2', () => 'never').catch((error: unknown) => error);
    await isQueued;

    const down = nextEvent(alice, 'disconnect');
    proxy.refuse();
    expect(await down).toMatchObject({ reconnecting: true });
    const error = await within(waiting);
    expect(error).toBeInstanceOf(LockError);
    expect(error).toMatchObject({ code: 'connection_lost' });

    const reconnected = nextEvent(alice, 'reconnect');
    proxy.unblock();
    expect(await reconnected).toMatchObject({ resumed: true });
    expect((await bob.status('doc:1')).holders.map((holder) => holder.token)).toEqual([lock?.token]);
    end();
    expect(await within(done)).toBeUndefined();
    expect((await bob.status('doc:1')).locked).toBe(false);
  });

  it('on a server drain, a held request rejects with connection_lost and a request waiting in the server queue with shutting_down', async () => {
    h = await startHarness();
    const bob = await h.connect();
    const { client: alice, queued } = await watchingQueue(h.server.url, { reconnect: false });
    const { done } = await holding(alice, 'doc:3', new Promise(() => undefined));
    await bob.acquire('doc:4');
    const isQueued = queued();
    const waiting = alice.locks.request('doc:4', () => 'never').catch((error: unknown) => error);
    await isQueued;

    const closing = h.server.close();
    const [held, queuedOutcome] = [await within(done), await within(waiting)];
    expect(held).toBeInstanceOf(LockError);
    expect(held).toMatchObject({ code: 'connection_lost', close: { code: 1001 } });
    expect(queuedOutcome).toBeInstanceOf(LockError);
    expect(queuedOutcome).toMatchObject({ code: 'shutting_down' });
    await closing;
  });
});
