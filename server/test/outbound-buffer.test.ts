import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectWith, startServer } from './auth-harness.js';
import type { Logger } from '../src/logger.js';
import { resumeQuery } from './grace-scenarios.js';
import { sessionLog, within, type Frame } from './server-harness.js';
import { RawSocket } from '../../test/helpers/raw-socket.js';

/**
 * A WebSocket client over a bare TCP socket that completes the handshake and
 * reads its welcome, then never reads again.
 */
async function openSlowReader(url: string) {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  const welcome = await within(
    new Promise<Frame>((resolve) => {
      const read = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const text = welcomeText(received);
        if (text === null) return;
        socket.off('data', read);
        socket.pause();
        resolve(JSON.parse(text) as Frame);
      };
      socket.on('data', read);
      socket.once('connect', () =>
        socket.write(
          `GET /v1 HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
      );
    }),
    'the handshake and the welcome',
  );
  return {
    welcome,
    write: (frame: Buffer) => socket.write(frame),
    destroy: () => socket.destroy(),
    /** Ends the connection with a TCP reset. */
    reset: () => socket.resetAndDestroy(),
  };
}

/** The welcome's JSON once `bytes` (the upgrade's answer and what follows) hold all of it, else null. */
function welcomeText(bytes: Buffer): string | null {
  const head = bytes.indexOf('\r\n\r\n');
  if (head < 0) return null;
  const frame = bytes.subarray(head + 4);
  if (frame.length < 2) return null;
  // A server frame is unmasked; a welcome is under 64 KiB.
  const short = (frame[1] ?? 0) & 0x7f;
  const [length, offset] = short === 126 ? [frame.length < 4 ? Infinity : frame.readUInt16BE(2), 4] : [short, 2];
  return frame.length < offset + length ? null : frame.subarray(offset, offset + length).toString();
}

/**
 * A server whose `doc:` prefix holds `count` locks with 1 KiB of meta each,
 * so one `list` or `watch` of them at `limit: count` is far over a
 * `maxBufferedBytes` of 256 KiB (and, at 5000, over what the loopback
 * socket takes at once), and a client that reads everything.
 */
async function bigTable(count: number) {
  const slowReaders: string[] = [];
  const heartbeatCuts: string[] = [];
  const sessions = sessionLog();
  const logger: Logger = {
    ...sessions.logger,
    info(obj, msg) {
      if (msg.startsWith('slow reader')) slowReaders.push(msg);
      if (msg.startsWith('heartbeat missed')) heartbeatCuts.push(msg);
      sessions.logger.info(obj, msg);
    },
  };
  const { server } = await startServer({
    limits: { maxBufferedBytes: 256 * 1024, maxLocksPerSession: count + 1, rateBurst: 2 * count },
    logger,
  });
  const { client: filler } = await connectWith(server.url, null);
  const meta = { note: 'x'.repeat(1000) };
  for (let id = 0; id < count; id++) filler.send({ op: 'acquire', id, key: `doc:${String(id).padStart(5, '0')}`, meta });
  expect(await filler.reply(count - 1)).toMatchObject({ ok: true, acquired: true });
  const { client: reader } = await connectWith(server.url, null);
  return { server, filler, reader, slowReaders, heartbeatCuts, sessions };
}

describe('outbound buffer cap', () => {
  it('sends a list reply larger than maxBufferedBytes whole to a client that reads it', async () => {
    const { reader, slowReaders } = await bigTable(5000);
    const reply = await reader.request({ op: 'list', id: 'big', prefix: 'doc:', limit: 5000 });
    expect(reply).toMatchObject({ ok: true, truncated: false });
    expect(reply.locks).toHaveLength(5000);
    expect(slowReaders).toEqual([]);
  });

  it('sends a watch snapshot larger than maxBufferedBytes whole to a client that reads it, then its events', async () => {
    const { reader, slowReaders } = await bigTable(5000);
    const reply = await reader.request({ op: 'watch', id: 'big', prefix: 'doc:', limit: 5000 });
    expect(reply.locks).toHaveLength(5000);
    expect(await reader.request({ op: 'acquire', id: 'mine', key: 'doc:new' })).toMatchObject({ acquired: true });
    expect(await reader.next((f) => f.type === 'event' && f.key === 'doc:new')).toMatchObject({ event: 'acquired' });
    expect(slowReaders).toEqual([]);
  });

  it('answers at once the requests that follow a reply larger than maxBufferedBytes, to a client that reads', async () => {
    const { reader, slowReaders } = await bigTable(5000);
    reader.send({ op: 'list', id: 'big', prefix: 'doc:', limit: 5000 });
    for (let id = 0; id < 20; id++) reader.send({ op: 'ping', id });
    expect((await reader.reply('big')).locks).toHaveLength(5000);
    expect(await reader.reply(19)).toMatchObject({ ok: true });
    expect(slowReaders).toEqual([]);
  });

  it('cuts at the cap, releasing its locks, a connection that pipelines many reads each larger than maxBufferedBytes and does not read them', async () => {
    const { server, filler, slowReaders, heartbeatCuts, sessions } = await bigTable(5000);
    const slow = await openSlowReader(server.url);
    try {
      await filler.request({ op: 'watch', id: 'w', prefix: 'slow-lock' });
      slow.write(RawSocket.json({ op: 'acquire', id: 'held', key: 'slow-lock' }));
      await filler.next((f) => f.type === 'event' && f.event === 'acquired' && f.key === 'slow-lock');
      // Each reply alone passes the cap: one is let through, the next counts in full.
      for (let id = 0; id < 40; id++) slow.write(RawSocket.json({ op: 'list', id, prefix: 'doc:', limit: 5000 }));
      // The server reads 5,000 locks for each reply until one passes the cap: seconds on a loaded machine.
      const released = (f: Frame) => f.type === 'event' && f.event === 'released' && f.key === 'slow-lock';
      expect(await filler.next(released, 'the slow reader\'s lock released', 15_000)).toMatchObject({
        key: 'slow-lock',
      });
      await sessions.closed(1, 'the slow reader to be cut');
      expect({ slowReaders: slowReaders.length, heartbeatCuts }).toEqual({ slowReaders: 1, heartbeatCuts: [] });
    } finally {
      slow.destroy();
    }
  });

  it('cuts a connection that stops reading once the replies queued for it pass maxBufferedBytes, releasing its locks, and leaves others served', async () => {
    const sessions = sessionLog();
    const { server } = await startServer({ limits: { maxBufferedBytes: 1024 * 1024 }, logger: sessions.logger });
    const { client: filler } = await connectWith(server.url, null);
    // Each list reply (300 locks of ~1 KiB) is well under the limit: only a
    // backlog of many of them, 18 MB in all, passes it.
    const meta = { pad: 'm'.repeat(900) };
    for (let id = 0; id < 300; id++) filler.send({ op: 'acquire', id, key: `fill:${id}`, meta });
    await filler.reply(299);
    const slow = await openSlowReader(server.url);
    // The slow reader reads no reply: the grant is seen through a watch.
    await filler.request({ op: 'watch', id: 'w', prefix: 'slow-lock' });
    slow.write(RawSocket.json({ op: 'acquire', id: 'held', key: 'slow-lock' }));
    await filler.next((f) => f.type === 'event' && f.event === 'acquired' && f.key === 'slow-lock');
    for (let id = 0; id < 60; id++) slow.write(RawSocket.json({ op: 'list', id }));
    // The paused socket reads nothing, not even the reset: the server's log is followed instead.
    await sessions.closed(1, 'the slow reader to be cut');
    const { client: next } = await connectWith(server.url, null);
    expect(await next.request({ op: 'acquire', id: 1, key: 'slow-lock', acquireTimeout: 2000 })).toMatchObject({
      ok: true,
      acquired: true,
    });
    expect(await filler.request({ op: 'ping', id: 'p' })).toMatchObject({ ok: true });
    slow.destroy();
  });

  it('with session grace on, keeps the locks of a slow reader it cut for the grace, and its session resumes', async () => {
    const grace = 60_000;
    const sessions = sessionLog();
    const { server, clock } = await startServer({
      limits: { maxBufferedBytes: 1024 * 1024 },
      sessionGrace: grace,
      logger: sessions.logger,
    });
    const { client: filler } = await connectWith(server.url, null);
    const meta = { pad: 'm'.repeat(900) };
    for (let id = 0; id < 300; id++) filler.send({ op: 'acquire', id, key: `fill:${id}`, meta });
    await filler.reply(299);
    const slow = await openSlowReader(server.url);
    try {
      await filler.request({ op: 'watch', id: 'w', prefix: 'slow-lock' });
      slow.write(RawSocket.json({ op: 'acquire', id: 'held', key: 'slow-lock' }));
      await filler.next((f) => f.type === 'event' && f.event === 'acquired' && f.key === 'slow-lock');
      for (let id = 0; id < 60; id++) slow.write(RawSocket.json({ op: 'list', id }));
      await sessions.closed(1, 'the slow reader to be cut');
      clock.advance(grace - 1);
      expect(await filler.request({ op: 'status', id: 'status', key: 'slow-lock' })).toMatchObject({
        holders: [{ session: slow.welcome.session }],
      });
      expect(filler.inbox.filter((f) => f.type === 'event')).toEqual([]);
      const { client, welcome } = await connectWith(`${server.url}${resumeQuery(slow.welcome)}`, null);
      expect(welcome).toMatchObject({ session: slow.welcome.session, resumed: true, held: [{ key: 'slow-lock' }] });
      expect(await client.request({ op: 'release', id: 1, key: 'slow-lock' })).toMatchObject({ ok: true, released: true });
    } finally {
      slow.destroy();
    }
  });

  it('cuts a connection that pings within its budget but never reads, once the pongs queued pass maxBufferedBytes', async () => {
    const sessions = sessionLog();
    const { server } = await startServer({
      limits: { maxBufferedBytes: 64 * 1024, rateLimit: 1000, rateBurst: 200_000 },
      logger: sessions.logger,
    });
    const slow = await openSlowReader(server.url);
    try {
      // Pongs of 125 bytes: 25 MB of them, past what the loopback socket buffers can hold.
      const pings = Buffer.concat(Array.from({ length: 10_000 }, () => RawSocket.frame(0x9, Buffer.alloc(125, 0x61))));
      for (let batch = 0; batch < 20; batch++) slow.write(pings);
      await sessions.closed(1, 'the pinging slow reader to be cut', 8000);
      expect(server.sessionCount()).toBe(0);
    } finally {
      slow.destroy();
    }
  }, 20_000);
});
