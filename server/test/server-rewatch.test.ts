import { afterEach, expect, it } from 'vitest';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { createLockServer, type LockServer } from '../src/server.js';

let server: LockServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

it('a second watch of a watched prefix never sends an event its own snapshot misses', async () => {
  server = await createLockServer({ port: 0, heartbeatInterval: 0 });
  const raw = await RawSocket.open(server.url);
  raw.write(RawSocket.json({ op: 'watch', id: 1, prefix: 'doc:' }));
  await raw.until((frames) => frames.some((f) => f.id === 1), 'the first watch reply');
  // Read together: the re-watch's snapshot is being taken when the acquire's event is pushed.
  raw.write(RawSocket.json({ op: 'watch', id: 2, prefix: 'doc:' }), RawSocket.json({ op: 'acquire', id: 3, key: 'doc:1' }));
  const frames = (
    await raw.until((all) => all.some((f) => f.id === 2) && all.some((f) => f.id === 3), 'both replies')
  ).slice(2);

  const eventAt = frames.findIndex((f) => f.type === 'event' && f.event === 'acquired');
  const rewatchAt = frames.findIndex((f) => f.type === 'reply' && f.id === 2);
  const snapshot = frames[rewatchAt] as { locks: Array<{ key: string }> };
  expect(eventAt).toBeGreaterThanOrEqual(0);
  expect(eventAt > rewatchAt || snapshot.locks.some((lock) => lock.key === 'doc:1')).toBe(true);
  expect(frames.filter((f) => f.type === 'event')).toHaveLength(1);
  raw.destroy();
});
