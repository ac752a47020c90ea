/**
 * The Origin allow-list (`--allow-origin`): which browser pages may open a
 * socket or call the HTTP endpoints. Apart from the authenticator because
 * it reads only the request's headers, never its credentials, and has
 * rules of its own: the entries' normal form, and the pages the server
 * serves itself (the dashboard, the editor demo), which are let in
 * without being listed.
 */
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

/**
 * An allowed-Origin entry as a browser would send it in `Origin`: scheme and
 * host lowercased, a default port and a trailing `/` dropped
 * (`HTTPS://App.Example:443/` -> `https://app.example`). `*` and `null` (the
 * Origin of opaque pages) stay as they are. Throws `TypeError` for an entry
 * that is not an origin (one with a path, query or fragment, or no host),
 * which could never match.
 */
export function normaliseOrigin(entry: string): string {
  const trimmed = entry.trim();
  if (trimmed === '*' || trimmed === 'null') return trimmed;
  let url: URL | null = null;
  try {
    url = new URL(trimmed);
  } catch {
    url = null;
  }
  if (url === null || url.origin === 'null' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new TypeError(`allowOrigins: ${JSON.stringify(entry)} is not an origin (scheme://host[:port])`);
  }
  return url.origin;
}

/**
 * A `Host` header that is a host and an optional port, nothing else: a name
 * (labels of letters, digits, `-` and `_`, as container service names have,
 * with the trailing dot of a fully qualified name allowed), an IPv4 address
 * or a bracketed IPv6 one.
 */
const HOST_HEADER = /^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * The scheme the browser reached the server with: `https` over TLS, or
 * what a proxy in front says in `X-Forwarded-Proto` (its first entry, when
 * it is `http` or `https`). A browser cannot set that header on a
 * WebSocket, nor on a request to another origin without the server's
 * consent (a CORS preflight, which lockwire does not grant).
 */
function schemeOf(req: IncomingMessage): 'http' | 'https' {
  const forwarded = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  if (first === 'http' || first === 'https') return first;
  return 'encrypted' in req.socket && req.socket.encrypted === true ? 'https' : 'http';
}

/** The request's `Host` as a parsed origin of `scheme`, or null when it is missing or not a host[:port]. */
function hostUrl(req: IncomingMessage, scheme: string): URL | null {
  const host = req.headers.host;
  if (host === undefined || !HOST_HEADER.test(host)) return null;
  try {
    return new URL(`${scheme}://${host}`);
  } catch {
    return null;
  }
}

/**
 * The Origin of the server's own pages as the browser that sent `req`
 * writes it: the scheme it reached the server with (see `schemeOf`) and the
 * `Host` header, `http://127.0.0.1:7311` or `https://locks.example.com`.
 * Null when the request has no usable `Host`.
 */
function ownOrigin(req: IncomingMessage): string | null {
  return hostUrl(req, schemeOf(req))?.origin ?? null;
}

/**
 * True when the request's `Host` names the server by an address no other
 * site can take: an IP address or `localhost`. A page of any other name may
 * be another site's whose name the attacker points at the server (DNS
 * rebinding): its Origin and the `Host` it sends match all the same.
 */
function hostIsAddress(req: IncomingMessage): boolean {
  const url = hostUrl(req, 'http');
  if (url === null) return false;
  const name = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return name === 'localhost' || isIP(name) !== 0;
}

/** What the Origin check is built from. */
export interface OriginCheckOptions {
  /**
   * Exact Origins allowed; `*` allows any. Absent or empty: Origin is not
   * checked. Entries are normalised as browsers send Origin (`normaliseOrigin`).
   */
  allowOrigins?: readonly string[] | undefined;
  /**
   * True when credentials are required. The server's own pages reached by a
   * name are let in only then: tokens, which a page of another site does
   * not hold, stand against DNS rebinding.
   */
  authEnabled: boolean;
}

/**
 * Builds the Origin check of a server: given a request, true when its
 * Origin may go on. A request without `Origin` (not a browser) always may:
 * non-browser clients can claim any. With a list (and no `*`), a listed
 * Origin may, and so may a page the server serves itself: an Origin equal
 * to `ownOrigin(req)`, when the request reached the server by an IP address
 * or `localhost`, or auth is on. Throws `TypeError` for an entry that is not
 * an origin.
 */
export function createOriginCheck(options: OriginCheckOptions): (req: IncomingMessage) => boolean {
  const origins = new Set((options.allowOrigins ?? []).map(normaliseOrigin));
  if (origins.size === 0 || origins.has('*')) return () => true;
  return (req) => {
    const origin = req.headers.origin;
    if (origin === undefined || origins.has(origin)) return true;
    return origin === ownOrigin(req) && (options.authEnabled || hostIsAddress(req));
  };
}
