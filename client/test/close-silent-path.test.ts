import { afterEach, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../test/helpers/tcp-proxy.js';
import { startHarness, within, type Harness } from './fixtures.js';

// close() sends a close frame and resolves when the socket has closed. Behind a path gone silent the server's
// answer never comes, and ws would wait 30 s for it: the client drops the socket after the keepalive's timeout
// (2 s without keepalive) instead.

let h: Harness | undefined;
let proxy: TcpProxy | undefined;
afterEach(async () => {
  await h?.close();
  await proxy?.close();
  h = proxy = undefined;
});

it('resolves close() within the keepalive timeout when the server cannot answer the close frame', async () => {
  h = await startHarness();
  proxy = await startTcpProxy(h.server.port);
  const client = await h.connectTo(proxy.url(h.server.url), { keepalive: { interval: 60_000, timeout: 200 } });
  const lease = await client.acquire('doc:1');
  proxy.strand();
  await within(client.close(), 3000, 'close() to resolve');
  expect(client.state).toBe('closed');
  expect(lease?.signal.aborted).toBe(true);
});

it('resolves close() within 2 s without keepalive when the server cannot answer the close frame', async () => {
  h = await startHarness();
  proxy = await startTcpProxy(h.server.port);
  const client = await h.connectTo(proxy.url(h.server.url), { keepalive: false });
  await client.acquire('doc:1');
  proxy.strand();
  await within(client.close(), 6000, 'close() to resolve');
  expect(client.state).toBe('closed');
});
