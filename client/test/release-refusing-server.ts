import { expect } from 'vitest';
import { LockClient, type ConnectOptions } from '@lockwire/client';
import { defaultResponse, startFakeServer, type FakeConnection, type FakeServer, type Frame } from './fake-server.js';
import { within } from './fixtures.js';
import { pauseGate, type HeldPause } from './pause-gate.js';

/** Options of {@link startReleaseRefusingServer}. */
export interface ReleaseRefusingServerOptions {
  /** The client's connect options; default `{ reconnect: false }`. */
  connect?: ConnectOptions;
  /** The n-th connection's extra welcome fields (0-based), e.g. session grace; default none. */
  welcome?: (n: number) => Record<string, unknown>;
  /** The error code {@link ReleaseRefusingServer.refuse} answers with unless told; default `rate_limited`. */
  refusal?: string;
}

/**
 * A fake server that leaves every acquire, cancel and release to the test
 * (so the test decides which release is refused), and a client over it.
 * The helpers act on the connection {@link server} names: the first one,
 * until {@link follow} moves them to a later one.
 */
export interface ReleaseRefusingServer {
  readonly fake: FakeServer;
  readonly client: LockClient;
  /** The connection the helpers act on (read it again after {@link follow}). */
  readonly server: FakeConnection;
  /** Waits (bounded) for the n-th connection and makes the helpers act on it; resolves with it. */
  follow(n: number): Promise<FakeConnection>;
  /** Refuses request `frame` with `code` (default: the `refusal` option). */
  refuse(frame: Frame, code?: string): void;
  /** Answers the next acquire of the connection with a grant of `token`; resolves with that acquire. */
  grantNext(token: number): Promise<Frame>;
  /** The acquires the connection got so far (what has arrived: see {@link acquiresArrived}). */
  acquiresSent(): Frame[];
  /** The acquires the connection got, once every frame the client sent before has arrived (a ping answered). */
  acquiresArrived(): Promise<Frame[]>;
  /** Grants the acquire `frame` (token 7 unless told) and answers its cancel as too late. */
  grantBeforeCancel(acquire: Frame, cancel: Frame, token?: number): void;
  /**
   * Aborts the call `start` makes while its acquire is unanswered (it must
   * reject with the abort's reason); the grant wins the race with the
   * cancel, and the server refuses the release of that late hold. Resolves
   * with the refused release once the client handled the refusal.
   */
  lateGrantWithRefusedRelease(start: (signal: AbortSignal) => Promise<unknown>): Promise<Frame>;
  /**
   * Runs a `withLock` of `k` granted token 7 whose release the server
   * refuses; resolves once it settled, with the backoff wait before the
   * release is asked again. The test file must route the client's `pause`
   * through {@link pauseGate} (a `vi.mock` of `../src/reconnect.js`), or
   * this never resolves and rejects after the gate's bounded wait.
   */
  withLockReleaseRefused(): Promise<HeldPause>;
  /** Accepts the next release the connection gets; resolves with it. */
  acceptRelease(): Promise<Frame>;
  /** Lets the held retry ask again and accepts that release (of `k`). */
  acceptRetry(retry: HeldPause): Promise<void>;
  /**
   * Marks `pending`'s rejection handled (the test checks it later) and
   * resolves once every frame the client sent for it has arrived.
   */
  sent(pending: Promise<unknown>): Promise<void>;
  /** Forgets the pause gate's held waits, closes the client, then the server. */
  close(): Promise<void>;
}

/**
 * Starts a {@link ReleaseRefusingServer} and connects a client to it. The
 * pause gate holds every wait from here on (it has no effect in a file that
 * does not route `pause` through it); `close()` resets it.
 */
export async function startReleaseRefusingServer(
  options: ReleaseRefusingServerOptions = {},
): Promise<ReleaseRefusingServer> {
  pauseGate.holding = true;
  const fake = await startFakeServer({
    welcome: options.welcome,
    respond: (frame) => (frame.op === 'release' || frame.op === 'cancel' ? undefined : defaultResponse(frame)),
  });
  const client = await LockClient.connect(fake.url, options.connect ?? { reconnect: false });
  let server = await fake.connection(0);
  const refusal = options.refusal ?? 'rate_limited';

  const refuse = (frame: Frame, code = refusal): void => {
    server.send({ type: 'reply', id: frame.id, ok: false, error: { code, message: 'not now' } });
  };
  const grantNext = async (token: number): Promise<Frame> => {
    const acquire = await server.nextRequest('acquire');
    server.reply(acquire.id, { acquired: true, token, expiresAt: null });
    return acquire;
  };
  const grantBeforeCancel = (acquire: Frame, cancel: Frame, token = 7): void => {
    server.reply(acquire.id, { acquired: true, token, expiresAt: null });
    server.reply(cancel.id, { cancelled: false });
  };
  const acceptRelease = async (): Promise<Frame> => {
    const release = await server.nextRequest('release');
    server.reply(release.id, { released: true });
    return release;
  };
  const acquiresSent = (): Frame[] => server.received.filter((frame) => frame.op === 'acquire');

  return {
    fake,
    client,
    get server() {
      return server;
    },
    async follow(n) {
      server = await fake.connection(n);
      return server;
    },
    refuse,
    grantNext,
    acquiresSent,
    async acquiresArrived() {
      await client.ping();
      return acquiresSent();
    },
    grantBeforeCancel,
    async lateGrantWithRefusedRelease(start) {
      const controller = new AbortController();
      const first = start(controller.signal);
      const acquire = await server.nextRequest('acquire');
      controller.abort(new Error('gave up'));
      await expect(within(first)).rejects.toThrow('gave up');
      grantBeforeCancel(acquire, await server.nextRequest('cancel'));
      const release = await server.nextRequest('release');
      refuse(release);
      await client.ping();
      return release;
    },
    async withLockReleaseRefused() {
      const done = client.withLock('k', () => 'done');
      await grantNext(7);
      refuse(await server.nextRequest('release'));
      expect(await within(done)).toBe('done');
      return pauseGate.next();
    },
    acceptRelease,
    async acceptRetry(retry) {
      retry.resume();
      expect(await acceptRelease()).toMatchObject({ key: 'k' });
    },
    async sent(pending) {
      pending.catch(() => undefined);
      await client.ping();
    },
    async close() {
      pauseGate.reset();
      await client.close();
      await fake.close();
    },
  };
}
