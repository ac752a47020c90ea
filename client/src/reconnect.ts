import { CloseCode, MAX_DURATION_MS, type HeldLock, type WelcomeMessage } from '@lockwire/protocol';
import { Connection, type ConnectionHandlers } from './connection.js';
import type { CloseInfo } from './errors.js';
import type { TransportFactory } from './transport.js';

/**
 * How a client reconnects after its connection drops. The n-th attempt
 * (1-based) waits `min(maxDelay, initialDelay * factor^(n-1))`, reduced by a
 * random share of up to `jitter` of it, so clients cut off together do not
 * come back together.
 */
export interface ReconnectOptions {
  /** Delay before the first attempt, in ms. Default 100. */
  initialDelay?: number;
  /** Largest delay between attempts, in ms. Default 10000. */
  maxDelay?: number;
  /** Growth of the delay per failed attempt. Default 2. */
  factor?: number;
  /** Share of each delay (0 to 1) that is randomly taken off. Default 0.5. */
  jitter?: number;
  /** Attempts before the client gives up and closes. Default `Infinity`. */
  maxAttempts?: number;
}

/** {@link ReconnectOptions} with every default filled in. */
export type ReconnectPolicy = Required<ReconnectOptions>;

/** Normalises the `reconnect` option: `false` turns reconnecting off; `undefined`/`true` takes the defaults. */
export function reconnectPolicy(option: ReconnectOptions | boolean | undefined): ReconnectPolicy | null {
  if (option === false) return null;
  const given = option === true || option === undefined ? {} : option;
  const policy: ReconnectPolicy = {
    initialDelay: given.initialDelay ?? 100,
    maxDelay: given.maxDelay ?? 10_000,
    factor: given.factor ?? 2,
    jitter: given.jitter ?? 0.5,
    maxAttempts: given.maxAttempts ?? Infinity,
  };
  for (const [name, value] of Object.entries(policy)) {
    if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
      throw new RangeError(`reconnect.${name} must be a number >= 0, got ${describe(value)}`);
    }
  }
  // The delays go to `setTimeout`, which takes anything above 2^31 - 1 ms (about 24.8 days, `Infinity`
  // included) for 1 ms: a cap meant as "very long" would make the client retry at once, over and over.
  for (const name of ['initialDelay', 'maxDelay'] as const) {
    if (policy[name] > MAX_DURATION_MS) {
      throw new RangeError(`reconnect.${name} must be a number of ms from 0 to ${MAX_DURATION_MS}, got ${describe(policy[name])}`);
    }
  }
  if (!Number.isFinite(policy.factor)) throw new RangeError(`reconnect.factor must be a finite number >= 0, got ${policy.factor}`);
  if (policy.jitter > 1) throw new RangeError(`reconnect.jitter must be between 0 and 1, got ${policy.jitter}`);
  return policy;
}

const describe = (value: unknown) => (typeof value === 'number' ? String(value) : typeof value);

/** The wait before attempt `attempt` (1-based); `random` returns a number in [0, 1). */
export function backoffDelay(policy: ReconnectPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxDelay, policy.initialDelay * policy.factor ** (attempt - 1));
  return base * (1 - policy.jitter * random());
}

/**
 * Close codes after which reconnecting cannot help: the server refused this
 * client (policy: bad credentials, abuse) or another connection resumed its
 * session.
 */
export function mayReconnectAfter(close: CloseInfo): boolean {
  return !close.byClient && close.code !== CloseCode.PolicyViolation && close.code !== CloseCode.Superseded;
}

/** What a session offers for resuming after a drop, from its welcome. */
export interface ResumeTicket {
  session: string;
  secret: string;
  /** How long the server keeps the session's locks after a disconnect, in ms. */
  grace: number;
}

/** The resume offer of a welcome, or `null` when the server runs without session grace. */
export function resumeTicket(welcome: WelcomeMessage): ResumeTicket | null {
  if (welcome.resume === undefined || welcome.grace === undefined) return null;
  return { session: welcome.session, secret: welcome.resume, grace: welcome.grace };
}

/** `url` with the resume parameters (`session`, `resume`) added, keeping its other query parameters. */
export function resumeUrl(url: string, ticket: ResumeTicket): string {
  const resumed = new URL(url);
  resumed.searchParams.set('session', ticket.session);
  resumed.searchParams.set('resume', ticket.secret);
  return resumed.toString();
}

/**
 * The holds a resumed welcome gave back, by key: a lease survives the
 * reconnect only if its key is listed with its own token. Empty unless the
 * welcome resumed `session`.
 */
export function keptHolds(welcome: WelcomeMessage, session: string): Map<string, HeldLock> {
  if (welcome.resumed !== true || welcome.session !== session) return new Map();
  return new Map((welcome.held ?? []).map((hold) => [hold.key, hold]));
}

/** Resolves after `ms`, or at once when `signal` aborts (whichever is first). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The longest `close()` spends, while disconnected, ending a session the server may still keep (ms). */
export const END_SESSION_TIMEOUT = 2000;

/** Pushes on a connection opened only to end its session: nothing is left to tell them to. */
const IGNORED: ConnectionHandlers = { lost: () => undefined, event: () => undefined, closed: () => undefined };

/**
 * Resumes the session of `ticket` and closes that connection at once with
 * 1000 (normal closure), which tells the server the client is done: it ends
 * the session and releases its locks now, instead of keeping them (and
 * blocking other clients) for the rest of the grace. A fresh session (the
 * ticket was no longer good) is closed the same way.
 *
 * One attempt, given up after `ms` (no retry): then the server releases the
 * locks when the grace runs out. Resolves once the socket closed or the time
 * is up; never rejects.
 */
export async function endSession(url: string, ticket: ResumeTicket, transport: TransportFactory, ms: number): Promise<void> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new Error(`no answer within ${ms} ms`)), ms);
  const timedOut = new Promise<void>((resolve) => timeout.signal.addEventListener('abort', () => resolve(), { once: true }));
  try {
    const { connection } = await Connection.open(resumeUrl(url, ticket), transport, IGNORED, { signal: timeout.signal });
    // The server ends the session on the close frame; its answer to it is only waited for while time is left.
    await Promise.race([connection.close(), timedOut]);
  } catch {
    // Unreachable, or too slow: the grace runs out on the server instead.
  } finally {
    clearTimeout(timer);
  }
}
