/**
 * When the server refuses a page for good. The dashboard and the editor
 * reconnect after every drop, but not after the server refused their
 * credentials: a token that expired or is not valid is refused again on
 * every attempt, so they stop and say what to do instead of retrying it
 * forever (the client library, too, does not reconnect after 1008).
 */
import { LockClient, LockError, type CloseInfo } from '@lockwire/client';
import { redactSecrets } from './format.js';

/** The close code of a server that refuses a connection's credentials (or its conduct: rate-limit abuse). */
const POLICY_VIOLATION = 1008;
/** How long the page waits for the answer about its own URL before it takes the failure for a network one. */
const PROBE_TIMEOUT_MS = 5000;

/** The server refuses this page's credentials: reconnecting with them cannot help. `message` is the text to show. */
export class AccessRefused extends Error {
  override readonly name = 'AccessRefused';
}

/** True when the page was opened with `?access_token=`. */
function hasToken(location: Location): boolean {
  return new URLSearchParams(location.search).has('access_token');
}

function refusedText(detail: string, location: Location): string {
  return hasToken(location)
    ? `Access refused (${detail}): the token expired or is not valid. Reopen the page with a new token.`
    : `Access refused (${detail}): the server needs a token. Open the page with ?access_token=<token>.`;
}

/**
 * `LockClient.connect(url)` without reconnecting, for a page. A browser
 * does not tell a page why a WebSocket upgrade failed (a 401 reads as a
 * close with 1006, as an unreachable server does), so when the connect
 * fails the page asks for its own URL (`HEAD`), which with auth on needs the
 * same token as the WebSocket: a 401 there means the server refuses the token.
 *
 * @throws AccessRefused when the connect failed and the server answers the
 * page's own URL 401; otherwise the connect's error (the server is
 * unreachable, or the question could not be answered within 5 s: the next
 * attempt may succeed).
 */
export async function connectPage(url: string, location: Location): Promise<LockClient> {
  try {
    return await LockClient.connect(url, { reconnect: false });
  } catch (error) {
    if (await answersUnauthorized(location)) throw new AccessRefused(refusedText('401', location), { cause: error });
    throw error;
  }
}

async function answersUnauthorized(location: Location): Promise<boolean> {
  try {
    const response = await fetch(location.href, {
      method: 'HEAD',
      cache: 'no-store',
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    return response.status === 401;
  } catch {
    // Unreachable, or no answer in time: nothing says the token is refused.
    return false;
  }
}

/**
 * The message to show when `ending` (how a connection attempt ended: the
 * `CloseInfo` of its close, or the error it failed with) means the server
 * refuses this page for good: an {@link AccessRefused}, or a close with
 * 1008 sent by the server (its credentials expired while connected, or it
 * was refused for sending too fast). `undefined` for every other ending:
 * the page reconnects as before.
 */
export function refusalOf(ending: unknown, location: Location): string | undefined {
  if (ending instanceof AccessRefused) return ending.message;
  const close = ending instanceof LockError ? ending.close : isCloseInfo(ending) ? ending : undefined;
  if (close === undefined || close.byClient || close.code !== POLICY_VIOLATION) return undefined;
  return refusedText(close.reason ? `1008: ${redactSecrets(close.reason)}` : '1008', location);
}

function isCloseInfo(value: unknown): value is CloseInfo {
  return typeof value === 'object' && value !== null && 'code' in value && 'byClient' in value;
}
