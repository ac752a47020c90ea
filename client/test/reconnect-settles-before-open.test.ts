import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LockClient } from '@lockwire/client';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { fastReconnect, nextEvent, startHarness, within, type Harness } from './fixtures.js';

let h: Harness;
let proxy: TcpProxy;
let observer: LockClient;

beforeEach(async () => {
  h = await startHarness({ sessionGrace: 30_000 });
  proxy = await startTcpProxy(h.server.port);
  observer = await h.connect();
});
afterEach(async () => {
  await proxy.close();
  await h.close();
});

/**
 * Connects `client`-to-be through the proxy, takes `key`, then cuts it off
 * until the server's grace has run out and `observer` got the key: the
 * reconnect that follows `proxy.unblock()` gets a fresh session.
 */
async function heldThroughGraceLoss(key: string) {
  const client = await h.connectTo(proxy.url(h.server.url), { reconnect: fastReconnect });
  const lease = await client.acquire(key);
  if (!lease) throw new Error(`${key} was not granted`);
  proxy.block();
  const down = nextEvent(client, 'disconnect');
  proxy.cut();
  await down;
  h.clock.advance(30_001);
  expect(await within(observer.acquire(key))).not.toBeNull();
  return { client, lease };
}

describe('reconnect to a fresh session', () => {
  it('when the state turns open again, client.leases no longer lists a lease the new session does not hold', async () => {
    const { client, lease } = await heldThroughGraceLoss('doc:1');
    let seenAtOpen: { listed: boolean; held: boolean } | undefined;
    client.on('state', (state) => {
      if (state === 'open') seenAtOpen = { listed: client.leases.has('doc:1'), held: lease.held };
    });
    const reconnected = nextEvent(client, 'reconnect');
    proxy.unblock();
    expect((await reconnected).resumed).toBe(false);
    expect(lease.held).toBe(false);
    expect(seenAtOpen).toEqual({ listed: false, held: false });
  });

  it('the lost lease aborts with connection_lost before the state turns open, and the reconnect event comes last', async () => {
    const { client, lease } = await heldThroughGraceLoss('doc:2');
    const order: string[] = [];
    lease.signal.addEventListener('abort', () => {
      const reason: unknown = lease.signal.reason;
      order.push(`abort ${reason instanceof Error && 'code' in reason ? String(reason.code) : String(reason)}`);
    });
    client.on('state', (state) => order.push(`state ${state}`));
    client.on('reconnect', () => order.push('reconnect'));
    const reconnected = nextEvent(client, 'reconnect');
    proxy.unblock();
    await reconnected;
    expect(order.slice(order.indexOf('abort connection_lost'))).toEqual([
      'abort connection_lost',
      'state open',
      'reconnect',
    ]);
  });

  it("close() called by the lost lease's abort listener as the reconnect settles ends the client: it never turns open and reports no reconnect", async () => {
    const { client, lease } = await heldThroughGraceLoss('doc:3');
    const states: string[] = [];
    const reconnects: unknown[] = [];
    client.on('state', (state) => states.push(state));
    client.on('reconnect', (info) => reconnects.push(info));
    // Only an abort after the reconnect opened: the drop itself left the lease waiting for the resume.
    lease.signal.addEventListener('abort', () => void client.close());
    const closed = nextEvent(client, 'close');
    proxy.unblock();
    expect(await closed).toMatchObject({ byClient: true });
    await observer.ping();
    expect(states).not.toContain('open');
    expect(states.at(-1)).toBe('closed');
    expect(reconnects).toEqual([]);
    expect(client.state).toBe('closed');
  });
});
