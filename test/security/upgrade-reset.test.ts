import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SECRET, token } from '../../server/test/auth-harness.js';
import { within } from '../../server/test/server-harness.js';
import { startLockwireProcess, type LockwireProcess } from '../helpers/lockwire-process.js';

const processes: LockwireProcess[] = [];
afterEach(async () => {
  await Promise.all(processes.splice(0).map((child) => child.kill()));
});

/** How many upgrades are reset: one reset lands while the token is verified within a few. */
const ATTEMPTS = 30;

/** Connects, writes `request`, and resets the connection (TCP RST) as soon as it is written. */
async function writeAndReset(port: number, request: string): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await within(new Promise((resolve) => socket.once('connect', resolve)), 'the TCP connection');
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.write(request, () => socket.resetAndDestroy());
  await within(closed, 'the reset');
}

describe('lockwire serve with auth on', () => {
  it('keeps serving when clients reset their connection while their upgrade token is verified', async () => {
    const child = await startLockwireProcess({ heartbeat: 0, args: ['--auth-secret', SECRET] });
    processes.push(child);
    // Any well-formed token is verified, one signed with another secret too.
    const forged = await token({ sub: 'mallory', locks: ['*'] }, { secret: 'not the server secret, but as long as it is' });
    const request =
      `GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${forged}\r\nUpgrade: websocket\r\n` +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    const health = `http://127.0.0.1:${child.port}/healthz`;
    const exited = child.exited.then(({ code, signal }) => `exited ${String(code ?? signal)}`);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      await writeAndReset(child.port, request);
      // Answered once the server went through the reset before it; unanswered when that ended the process.
      const outcome = await within(
        fetch(health).then((res) => `health ${res.status}`, () => exited),
        `the health check after reset ${attempt + 1}`,
      );
      expect(outcome).toBe('health 200');
    }
  });
});
