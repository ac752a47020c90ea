/**
 * How a page connects and takes the server's refusals. The dashboard and
 * the editor let the client reconnect after a drop, so with session grace on
 * they resume their session (an editor tab keeps the document it holds). They
 * do not go on after the server refused their credentials: a token that
 * expired or is not valid is refused again on every attempt, so they stop
 * and say what to do instead of retrying it forever. Nor after it refused
 * the page's origin (`--allow-origin`), which no retry changes either. A
 * close with 1008 for the page's conduct (sending too fast) is not about
 * its credentials: the page says so and connects again, but slowly.
 */
import { ClientErrorCode, LockClient, LockError, type CloseInfo, type ReconnectOptions, type Watch } from '@lockwire/client';
import { redactSecrets } from './format.js';

/** The close code of a server that refuses a connection's credentials, or its conduct (rate-limit abuse). */
const POLICY_VIOLATION = 1008;
/**
 * A 1008 whose reason says the credentials or the token expired or are not
 * valid (the server's own: `credentials expired`). Any other 1008 is about
 * the connection's conduct: taking it for a refused token would tell a page
 * without one that the server needs one, and stop it for good.
 */
const CREDENTIALS_REASON = /\b(credentials?|token)\b/i;
const REFUSED_REASON = /\b(expired|invalid|not valid|revoked)\b/i;
/** A 1008 for sending too fast (the server's own: `rate limit exceeded`). */
const RATE_REASON = /\brate\b|too fast/i;
/** Reconnect delay after a close for conduct: 5 s doubling to 60 s, so a page that floods does not hammer the server. */
const POLICY_DELAY_MS = 5000;
const POLICY_DELAY_MAX_MS = 60_000;
/**
 * How the client reconnects after a drop: 0.5 s doubling to 10 s, with up
 * to a quarter taken off at random so tabs cut off together do not return
 * together. It never gives up; closes it does not retry (1008, 4001) end
 * the client, and the page decides.
 */
const PAGE_RECONNECT: ReconnectOptions = { initialDelay: 500, maxDelay: 10_000, factor: 2, jitter: 0.25 };
/** How long the page waits for the answer about its own URL before it takes the failure for a network one. */
const PROBE_TIMEOUT_MS = 5000;

/** The server refuses this page's credentials or its origin: reconnecting cannot help. `message` is the text to show. */
export class AccessRefused extends Error {
  override readonly name = 'AccessRefused';
}

/** True when the page was opened with `?access_token=`. */
function hasToken(location: Location): boolean {
  return new URLSearchParams(location.search).has('access_token');
}

/** What the page says when the server refuses its origin (403 at the upgrade). */
function forbiddenText(location: Location): string {
  return `Access refused (403): the server does not let pages of ${location.origin} connect. Open this page at an address the server takes for its own, or add ${location.origin} to its --allow-origin list.`;
}

/**
 * The refusal to show for `status`, the answer the page's own URL got;
 * `options.cause` is the failure that made the page ask.
 */
function refusalFor(status: RefusalStatus, location: Location, options?: ErrorOptions): AccessRefused {
  return new AccessRefused(status === 403 ? forbiddenText(location) : refusedText('401', location), options);
}

function refusedText(detail: string, location: Location): string {
  return hasToken(location)
    ? `Access refused (${detail}): the token expired or is not valid. Reopen the page with a new token.`
    : `Access refused (${detail}): the server needs a token. Open the page with ?access_token=<token>.`;
}

/**
 * `LockClient.connect(url)` for a page: the client reconnects after a drop
 * (resuming the session when the server has session grace), see
 * {@link connectionEnd}. A browser does not tell a page why a WebSocket
 * upgrade failed (a 401 or 403 reads as a close with 1006, as an unreachable
 * server does), so when the connect fails the page asks the server about its
 * own URL (see {@link refusalStatus}), which is checked as the WebSocket is:
 * a 401 there means the server refuses the token, a 403 the page's origin.
 *
 * @throws AccessRefused when the connect failed and the server answers the
 * page's own URL 401 or 403; otherwise the connect's error (the server is
 * unreachable, or the question could not be answered within 5 s: the next
 * attempt may succeed).
 */
export async function connectPage(url: string, location: Location): Promise<LockClient> {
  try {
    return await LockClient.connect(url, { reconnect: PAGE_RECONNECT });
  } catch (error) {
    const status = await refusalStatus(location);
    if (status !== null) throw refusalFor(status, location, { cause: error });
    throw error;
  }
}

/**
 * How a live page connection ends, while the client reconnects by itself
 * through drops. Resolves with `closed` (the client's `close`: a close it
 * does not retry, 1008 or 4001). Rejects with an {@link AccessRefused} when
 * a reconnect attempt failed and the server answers the page's own URL 401
 * or 403 (the token expired while the page was away, or the server came
 * back with an allow-list without the page's origin: the client would try
 * forever), or with the error of a re-watch of `watch` the server refused
 * after a reconnect (the page would hear nothing more). The caller closes
 * the client either way.
 */
export function connectionEnd(
  client: LockClient,
  watch: Watch,
  closed: Promise<CloseInfo>,
  location: Location,
): Promise<CloseInfo> {
  const refused = new Promise<never>((_, reject) => {
    let asking = false;
    const off = onFailedAttempt(client, () => {
      if (asking) return;
      asking = true;
      void refusalStatus(location).then((status) => {
        asking = false;
        if (status === null || client.state === 'closed') return;
        off();
        reject(refusalFor(status, location));
      });
    });
  });
  const watchFailed = new Promise<never>((_, reject) => {
    const failed = () => {
      const reason: unknown = watch.signal.reason;
      // The client closing for good ends the watch too; `closed` tells that ending.
      if (!(reason instanceof LockError && reason.code === ClientErrorCode.ConnectionClosed)) reject(reason);
    };
    if (watch.signal.aborted) failed();
    else watch.signal.addEventListener('abort', failed, { once: true });
  });
  return Promise.race([closed, refused, watchFailed]);
}

/**
 * Calls `listener` after each failed reconnect attempt of `client` (its
 * state went from `connecting` back to `reconnecting`) until the client
 * closes. Returns a function that removes the listener.
 */
export function onFailedAttempt(client: LockClient, listener: () => void): () => void {
  let attempting = false;
  const off = client.on('state', (state) => {
    const failed = attempting && state === 'reconnecting';
    attempting = state === 'connecting';
    if (state === 'closed') off();
    if (failed) listener();
  });
  return off;
}

/** The answers of the server's check of a page's request that no retry changes: its credentials (401), its origin (403). */
type RefusalStatus = 401 | 403;

/**
 * How the server answers a request for the page's own URL: 401 or 403 when
 * it refuses the page's credentials or origin, null otherwise. The request
 * is an `OPTIONS` (safe, and answered without a body): a browser sends
 * `Origin` on it, as on the WebSocket upgrade, and on no `GET` or `HEAD` of
 * the page's own origin, so the server checks the page's origin and token
 * there exactly as it checks the socket's.
 */
async function refusalStatus(location: Location): Promise<RefusalStatus | null> {
  try {
    const response = await fetch(location.href, {
      method: 'OPTIONS',
      cache: 'no-store',
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    return response.status === 401 || response.status === 403 ? response.status : null;
  } catch {
    // Unreachable, or no answer in time: nothing says the page is refused.
    return null;
  }
}

/**
 * The message to show when `ending` (how a connection attempt ended: the
 * `CloseInfo` of its close, or the error it failed with) means the server
 * refuses this page's credentials for good: an {@link AccessRefused}, or a
 * close with 1008 sent by the server whose reason says the credentials
 * expired or are not valid. `undefined` for every other ending (a 1008 for
 * sending too fast among them, see {@link policyCloseOf}): the page
 * reconnects.
 */
export function refusalOf(ending: unknown, location: Location): string | undefined {
  if (ending instanceof AccessRefused) return ending.message;
  const close = serverPolicyClose(ending);
  if (close === undefined || !refusesCredentials(close.reason)) return undefined;
  return refusedText(`1008: ${redactSecrets(close.reason)}`, location);
}

/**
 * The message to show when `ending` is a close with 1008 sent by the server
 * for the page's conduct rather than its credentials (see
 * {@link refusalOf}): `Closed for sending too fast (1008: rate limit
 * exceeded).`, or for another reason `Closed by the server (1008: <reason>).`
 * The page reconnects after {@link policyReconnectDelay}. `undefined` for
 * every other ending.
 */
export function policyCloseOf(ending: unknown): string | undefined {
  const close = serverPolicyClose(ending);
  if (close === undefined || refusesCredentials(close.reason)) return undefined;
  const detail = close.reason ? `1008: ${redactSecrets(close.reason)}` : '1008';
  return RATE_REASON.test(close.reason) ? `Closed for sending too fast (${detail}).` : `Closed by the server (${detail}).`;
}

/**
 * Reconnect delay after `closes` closes for conduct in a row (0 for the
 * first): 5 s doubling to 60 s, with ±25 % jitter so tabs do not return at
 * once. Longer than a drop's backoff: the server asked the page to slow down.
 */
export function policyReconnectDelay(closes: number): number {
  const base = Math.min(POLICY_DELAY_MAX_MS, POLICY_DELAY_MS * 2 ** Math.min(Math.max(0, closes), 4));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

function refusesCredentials(reason: string): boolean {
  return CREDENTIALS_REASON.test(reason) && REFUSED_REASON.test(reason);
}

/** The close of `ending` when the server closed it with 1008, from a `CloseInfo` or the error it failed with. */
function serverPolicyClose(ending: unknown): CloseInfo | undefined {
  const close = ending instanceof LockError ? ending.close : isCloseInfo(ending) ? ending : undefined;
  return close === undefined || close.byClient || close.code !== POLICY_VIOLATION ? undefined : close;
}

function isCloseInfo(value: unknown): value is CloseInfo {
  return typeof value === 'object' && value !== null && 'code' in value && 'byClient' in value;
}
