import { expect } from 'vitest';
import { RawSocket } from '../../test/helpers/raw-socket.js';
import { connectWith } from './auth-harness.js';
import type { Frame, RawClient } from './server-harness.js';
import { openSilentPeer, ServerOpcode, type SilentPeer } from './silent-peer.js';

/**
 * A silent peer on a bare socket (it never ends its TCP side) holding `k`
 * (acquire id 1), with its welcome, and a client whose acquire of `k` (id 2)
 * is queued behind it, on the server at `url`. Fails the calling test if the
 * peer's acquire is not granted; the sockets are closed by the hooks of the
 * modules that opened them.
 */
export async function silentHolderWithWaiter(url: string): Promise<{ peer: SilentPeer; welcome: Frame; waiter: RawClient }> {
  const peer = await openSilentPeer(url);
  const first = peer.frames().find((frame) => frame.opcode === ServerOpcode.Text);
  const welcome = JSON.parse(first?.payload.toString() ?? '{}') as Frame;
  const { client: waiter } = await connectWith(url, null);
  peer.write(RawSocket.json({ op: 'acquire', id: 1, key: 'k' }));
  expect(await peer.reply(1)).toMatchObject({ ok: true, acquired: true });
  waiter.send({ op: 'acquire', id: 2, key: 'k' });
  await waiter.next((f) => f.type === 'queued');
  return { peer, welcome, waiter };
}
