import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { connectWith, startServer } from './auth-harness.js';
import { openSilentPeer, ServerOpcode } from './silent-peer.js';

/**
 * Makes the server's WebSockets (not the clients') keep a received close
 * frame where the server cannot read it, as a `ws` that moved its private
 * fields would: the server then learns of the peer's close only at `ws`'s
 * 'close', and the connection is closing meanwhile. Undone after the file.
 */
function hideReceivedCloseOnServerSockets(): () => void {
  const kept = Symbol('closeFrameReceived');
  type Hidden = { _isServer?: boolean; [kept]?: unknown };
  Object.defineProperty(WebSocket.prototype, '_closeFrameReceived', {
    configurable: true,
    get(this: Hidden) {
      return this._isServer === true ? undefined : this[kept];
    },
    set(this: Hidden, value: unknown) {
      this[kept] = value;
    },
  });
  return () => {
    Reflect.deleteProperty(WebSocket.prototype, '_closeFrameReceived');
  };
}

let restore: () => void = () => undefined;
beforeAll(() => {
  restore = hideReceivedCloseOnServerSockets();
});
afterAll(() => restore());

describe('a close frame the server learns the code of only at close', () => {
  it('with grace on, a lock lost while the connection is closing is told as lost after the resumed welcome', async () => {
    const { server } = await startServer({ sessionGrace: 60_000 });
    const peer = await openSilentPeer(server.url);
    const welcome = JSON.parse(peer.frames().find((f) => f.opcode === ServerOpcode.Text)?.payload.toString() ?? '{}') as Record<string, unknown>;
    peer.write(RawSocket.json({ op: 'acquire', id: 1, key: 'k' }));
    expect(await peer.reply(1)).toMatchObject({ ok: true, acquired: true });

    // The client closes meaning to resume; the server answers, and its connection is closing until the peer ends its side.
    peer.write(RawSocket.closeFrame(4000));
    expect(await peer.closeFrame()).toBe(4000);
    const { client: thief } = await connectWith(server.url, null);
    expect(await thief.request({ op: 'acquire', id: 1, key: 'k', steal: true })).toMatchObject({ acquired: true });

    const query = `?session=${encodeURIComponent(String(welcome.session))}&resume=${encodeURIComponent(String(welcome.resume))}`;
    const again = await connectWith(server.url + query, null);
    expect(again.welcome).toMatchObject({ session: welcome.session, resumed: true, held: [] });
    // A ping after the resumed welcome is answered after every lost the server knows of.
    await again.client.request({ op: 'ping', id: 1 });
    expect(again.client.inbox.filter((f) => f.type === 'lost')).toEqual([
      { type: 'lost', key: 'k', token: expect.any(Number), reason: 'stolen' },
    ]);
  });
});
