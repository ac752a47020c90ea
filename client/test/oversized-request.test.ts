import { afterEach, expect, it } from 'vitest';
import type { LockError } from '@lockwire/client';
import { recordingTransport, startHarness, type Harness } from './fixtures.js';

// The server closes a connection with 1009 for a frame over its maxPayload, which would take every lease of the
// session with it: the client refuses such a request itself, as it refuses a duration the server would refuse.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it('refuses a request over the welcome maxPayload with bad_request, sending nothing; the connection and its leases stay', async () => {
  h = await startHarness({ limits: { maxPayload: 1024 } });
  const { transport, sent } = recordingTransport();
  const client = await h.connect({ transport });
  const lease = await client.acquire('doc:1');
  const framesBefore = sent.length;

  const longKey = (await client.acquire('k'.repeat(2000)).catch((error: unknown) => error)) as LockError;
  expect(longKey).toMatchObject({ code: 'bad_request' });
  expect(longKey.message).toMatch(/^acquire: the request is \d+ bytes of JSON, over the server's maxPayload of 1024 bytes/);
  // 400 euro signs are 400 UTF-16 units but 1200 bytes of UTF-8: the limit is counted in bytes, as the server does.
  const wideMeta = await client.acquire('doc:2', { meta: { note: '€'.repeat(400) } }).catch((error: unknown) => error);
  expect(wideMeta).toMatchObject({ code: 'bad_request' });
  const watch = await client.watch('p'.repeat(2000), () => {}).catch((error: unknown) => error);
  expect(watch).toMatchObject({ code: 'bad_request' });
  expect(sent.length).toBe(framesBefore);

  expect(lease?.held).toBe(true);
  expect(lease?.signal.aborted).toBe(false);
  expect(client.state).toBe('open');
  // Just under the limit in bytes (300 euro signs, 900 bytes, with the rest of the frame) goes through.
  const near = await client.acquire('doc:3', { meta: { note: '€'.repeat(300) } });
  expect(near?.token).toBeGreaterThan(0);
  expect((await client.status('doc:1')).holders).toEqual([expect.objectContaining({ token: lease?.token })]);
});
