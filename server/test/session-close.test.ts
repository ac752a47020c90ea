import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { whenCloseReceived } from '../src/close-handshake.js';
import { connectWith, startServer } from './auth-harness.js';
import { RawClient, within } from './server-harness.js';
import { silentHolderWithWaiter } from './silent-holder.js';
import { openSilentPeer, ServerOpcode, type SilentPeer } from './silent-peer.js';

/**
 * Shorter than the 2 s within which the server cuts a connection whose
 * close handshake it finished: a cut the test awaits this long came from
 * the injected clock, not from a real-time backstop.
 */
const BEFORE_REAL_CUT_MS = 1000;

/** The welcome the server sent `peer`. */
function welcomeOf(peer: SilentPeer): Record<string, unknown> {
  const first = peer.frames().find((frame) => frame.opcode === ServerOpcode.Text);
  return first ? (JSON.parse(first.payload.toString()) as Record<string, unknown>) : {};
}

/** The replies the server sent `peer` to its request `id`. */
function repliesTo(peer: SilentPeer, id: number): Array<Record<string, unknown>> {
  return peer
    .frames()
    .filter((frame) => frame.opcode === ServerOpcode.Text)
    .map((frame) => JSON.parse(frame.payload.toString()) as Record<string, unknown>)
    .filter((message) => message.type === 'reply' && message.id === id);
}

describe('a close by the client', () => {
  it.each([
    ['off', 0],
    ['on', 60_000],
  ])(
    'with grace %s, a close with 1000 ends the session once the server answered it: its lock goes to the waiter while its TCP connection is still open',
    async (_grace, sessionGrace) => {
      const { server, clock } = await startServer({ sessionGrace });
      const { peer, waiter } = await silentHolderWithWaiter(server.url);
      peer.write(RawSocket.closeFrame(1000));
      expect(await peer.closeFrame()).toBe(1000);
      expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
      expect(peer.isCut()).toBe(false);
      expect(server.sessionCount()).toBe(1);
      // The peer never ends its side: the server cuts it 2 s after the handshake.
      clock.advance(2000);
      await peer.cut(BEFORE_REAL_CUT_MS);
    },
  );

  it('with grace off, a close with 1001 releases the locks at once too', async () => {
    const { server } = await startServer();
    const { peer, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(RawSocket.closeFrame(1001));
    expect(await peer.closeFrame()).toBe(1001);
    expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
    expect(peer.isCut()).toBe(false);
  });

  it('with grace on, a close with 1001 detaches the session once the server answered it: its queued acquire leaves the queue, its lock stays, and it resumes', async () => {
    const { server, clock } = await startServer({ sessionGrace: 60_000 });
    const { client: holder } = await connectWith(server.url, null);
    await holder.request({ op: 'acquire', id: 1, key: 'q' });
    const { client: watcher } = await connectWith(server.url, null);
    await watcher.request({ op: 'watch', id: 1, prefix: '' });
    const { peer, waiter } = await silentHolderWithWaiter(server.url);
    peer.write(RawSocket.json({ op: 'acquire', id: 2, key: 'q' }));
    await watcher.next((f) => f.type === 'event' && f.event === 'queued' && f.key === 'q');
    peer.write(RawSocket.closeFrame(1001));
    expect(await peer.closeFrame()).toBe(1001);
    await watcher.next((f) => f.type === 'event' && f.event === 'dequeued' && f.key === 'q');
    expect(peer.isCut()).toBe(false);
    const { session, resume } = welcomeOf(peer);
    const resumed = await connectWith(`${server.url}?session=${String(session)}&resume=${String(resume)}`, null);
    expect(resumed.welcome).toMatchObject({ resumed: true, held: [{ key: 'k' }] });
    expect(await waiter.request({ op: 'status', id: 3, key: 'k' })).toMatchObject({ locked: true });
    clock.advance(2000);
    await peer.cut(BEFORE_REAL_CUT_MS);
    expect(await resumed.client.request({ op: 'release', id: 1, key: 'k' })).toMatchObject({ ok: true });
    expect(await waiter.reply(2)).toMatchObject({ ok: true, acquired: true });
  });

  it('does not grant a queued acquire of a client that closed with 1000, though its TCP connection is still open', async () => {
    const { server } = await startServer();
    const { client: holder } = await connectWith(server.url, null);
    await holder.request({ op: 'acquire', id: 1, key: 'k' });
    const peer = await openSilentPeer(server.url);
    peer.write(RawSocket.json({ op: 'acquire', id: 1, key: 'k' }), RawSocket.json({ op: 'ping', id: 2 }));
    await peer.reply(2);
    const { client: third } = await connectWith(server.url, null);
    third.send({ op: 'acquire', id: 2, key: 'k' });
    await third.next((f) => f.type === 'queued');
    peer.write(RawSocket.closeFrame(1000));
    expect(await peer.closeFrame()).toBe(1000);
    await holder.request({ op: 'release', id: 2, key: 'k' });
    expect(await third.reply(2)).toMatchObject({ ok: true, acquired: true });
    expect(repliesTo(peer, 1)).toEqual([]);
  });

  it('ends without grace the session of a ws client that closes with 1000 and then ends its TCP side', async () => {
    const { server } = await startServer({ sessionGrace: 60_000 });
    const { client, welcome } = await RawClient.connect(server.url);
    await client.request({ op: 'acquire', id: 1, key: 'k' });
    client.ws.close(1000);
    expect(await within(client.closed, 'the close')).toMatchObject({ code: 1000 });
    const url = `${server.url}?session=${String(welcome.session)}&resume=${String(welcome.resume)}`;
    const { welcome: fresh, client: next } = await connectWith(url, null);
    expect(fresh).toMatchObject({ resumed: false });
    expect(await next.request({ op: 'status', id: 1, key: 'k' })).toMatchObject({ locked: false });
  });
});

const wsServers: WebSocketServer[] = [];

afterEach(async () => {
  for (const wss of wsServers.splice(0)) {
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }
});

/**
 * A bare ws server on port 0 that hands its connections to `connected` and
 * greets them with a text frame; resolves with its URL once listening.
 */
async function wsServer(connected: (ws: WebSocket, socket: Duplex) => void): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  wsServers.push(wss);
  wss.on('connection', (ws, req) => {
    connected(ws, req.socket);
    ws.send('{}');
  });
  await within(new Promise((resolve) => wss.once('listening', resolve)), 'the ws server to listen');
  const address = wss.address();
  if (address === null || typeof address === 'string') throw new Error('the ws server has no TCP address');
  return `ws://127.0.0.1:${address.port}/`;
}

describe('whenCloseReceived', () => {
  it("reports the code of the peer's close frame once answered, while the peer's TCP side is still open", async () => {
    const codes: number[] = [];
    let closeEmitted = false;
    const url = await wsServer((ws, socket) => {
      whenCloseReceived(ws, socket, (code) => codes.push(code));
      ws.on('close', () => (closeEmitted = true));
    });
    const peer = await openSilentPeer(url);
    peer.write(RawSocket.closeFrame(4000));
    expect(await peer.closeFrame()).toBe(4000);
    expect({ codes, closeEmitted }).toEqual({ codes: [4000], closeEmitted: false });
  });

  it("leaves a close whose code ws does not expose to ws's close event", async () => {
    const codes: number[] = [];
    let closed: (code: number) => void = () => undefined;
    const closeCode = new Promise<number>((resolve) => (closed = resolve));
    const url = await wsServer((ws, socket) => {
      // As a ws that keeps the received close elsewhere: the field reads as missing.
      Object.defineProperty(ws, '_closeFrameReceived', { get: () => undefined, set: () => undefined });
      whenCloseReceived(ws, socket, (code) => codes.push(code));
      ws.on('close', (code) => closed(code));
    });
    const { client } = await RawClient.connect(url);
    client.ws.close(4000);
    expect(await within(closeCode, "the server's close event")).toBe(4000);
    expect(codes).toEqual([]);
  });
});
