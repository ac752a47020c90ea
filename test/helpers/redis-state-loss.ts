import { withRedis } from './redis-server.js';
import type { RawClient } from './raw-client.js';

/** Empties the whole Redis server, as a restart without persistence would. */
export async function flushAll(url: string): Promise<void> {
  await withRedis(url, (admin) => admin.flushAll());
}

/**
 * Sends acquires of a key nobody uses until one is refused saying Redis lost
 * its state: the node has found the loss, and told its holders before that reply.
 */
export async function untilStateLossFound(client: RawClient, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const reply = await client.request({ op: 'acquire', key: 'unused', acquireTimeout: 0 });
    const error = reply.error as { code?: string; message?: string } | undefined;
    if (error?.code === 'store_unavailable' && /lost its state/.test(error.message ?? '')) return;
    if (error?.code !== 'store_unavailable') throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
    if (Date.now() > deadline) throw new Error(`the node did not find Redis' lost state within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
