import { SignJWT, type JWTPayload } from 'jose';
import WebSocket from 'ws';
import { afterEach } from 'vitest';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createLockServer, type LockServer, type LockServerOptions } from '../src/server.js';
import { RawClient, within } from './server-harness.js';

export const SECRET = 'test secret of the auth suites, long enough for HS256';

const servers: LockServer[] = [];
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** A memory server on port 0 with a manual clock (unless one is given), closed after the test. */
export async function startServer(options: LockServerOptions = {}): Promise<{ server: LockServer; clock: ManualClock }> {
  const clock = createManualClock(Date.now());
  const used = options.clock ?? clock;
  const server = await createLockServer({
    port: 0,
    heartbeatInterval: 0,
    clock: used,
    store: createMemoryStore({
      clock: used,
      limits: {
        ...(options.limits?.maxLocksPerSession ? { maxLocksPerSession: options.limits.maxLocksPerSession } : {}),
        ...(options.limits?.maxWaitersPerKey ? { maxWaitersPerKey: options.limits.maxWaitersPerKey } : {}),
      },
    }),
    ...options,
  });
  servers.push(server);
  return { server, clock };
}

/** Signs a token with `SECRET` (or `secret`); `exp` in seconds from `now` (ms) unless given in the claims. */
export async function token(
  claims: JWTPayload,
  options: { secret?: string; now?: number; ttlSeconds?: number } = {},
): Promise<string> {
  const now = Math.floor((options.now ?? Date.now()) / 1000);
  return new SignJWT({ exp: now + (options.ttlSeconds ?? 3600), ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt(now)
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** Connects (welcome consumed), the token in the Authorization header; the client is cut after the test. */
export async function connectWith(url: string, bearer: string | null, headers: Record<string, string> = {}) {
  const connection = await RawClient.connect(url, {
    headers: bearer === null ? headers : { ...headers, authorization: `Bearer ${bearer}` },
  });
  clients.push(connection.client);
  return connection;
}

/** The HTTP status the upgrade was refused with, or 101 when it opened (the socket is then closed). */
export async function upgradeStatus(url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  const ws = new WebSocket(url, options);
  return within(
    new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('upgrade', () => {
        resolve(101);
        ws.terminate();
      });
      ws.once('error', (error) => {
        if (!/Unexpected server response/.test(error.message)) reject(error);
      });
    }),
    'the upgrade answer',
  );
}

/** GET on the server's HTTP side: status and JSON body (null when not JSON). */
export async function get(server: LockServer, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.httpUrl}${path}`, { headers });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: res.status, body };
}
