/**
 * Text formatting shared by the dashboard and the editor demo: durations,
 * meta objects, session ids and the WebSocket URL of the serving server.
 */

/** The WebSocket endpoint of the server that served this page (the protocol's `/v1`). */
export function endpointUrl(location: Location): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // Browsers cannot set headers on a WebSocket, so the token travels in the query as well.
  return `${scheme}//${location.host}${withPageToken('/v1', location)}`;
}

/**
 * `path` with the page's own `access_token` (if it was opened with one)
 * added as its query. With auth on, a page is opened as
 * `/?access_token=...`, and every other page of the server, and its
 * WebSocket, needs the same token: a link without it would be refused 401.
 */
export function withPageToken(path: string, location: Location): string {
  const token = new URLSearchParams(location.search).get('access_token');
  return token ? `${path}?access_token=${encodeURIComponent(token)}` : path;
}

/**
 * A secret parameter of a URL and its value: `access_token` (the page's
 * token), `resume` (a session's resume secret) and the usual names of
 * credentials, in a query or a fragment, names in any case, as
 * docs/security.md lists them. The value ends where the parameter does, or
 * at a space or quote when a message quotes the URL.
 */
const SECRET_PARAM = /([?&#](?:access_token|resume|password|token|secret|auth)=)[^&#\s'"<>]*/gi;

/**
 * `text` with the value of every secret URL parameter in it replaced by
 * `REDACTED` (`ws://host/v1?access_token=REDACTED`). Every URL the pages
 * show, and every error message (a browser's may quote the URL it could not
 * open), goes through it, so no page prints the token it was opened with.
 */
export function redactSecrets(text: string): string {
  return text.replace(SECRET_PARAM, '$1REDACTED');
}

/** The text of an error for a message on the page, secrets redacted. */
export function errorText(error: unknown): string {
  return redactSecrets(error instanceof Error ? error.message : String(error));
}

/** `1.2s`, `45s`, `3m 20s`, `2h 05m`; negative spans read as `0s`. */
export function formatDuration(ms: number): string {
  const span = Math.max(0, ms);
  if (span < 10_000) return `${(span / 1000).toFixed(1)}s`;
  const seconds = Math.floor(span / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, '0')}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d ${String(hours % 24).padStart(2, '0')}h`;
}

/** `HH:MM:SS.mmm` of an epoch time, in the browser's zone. */
export function formatClock(epochMs: number): string {
  const date = new Date(epochMs);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

const MAX_META_TEXT = 80;

/**
 * `user=ana tab=3f2a` from a meta object; `''` for `null`. Names and values
 * are shown with {@link escapeText}; text longer than 80 characters is cut
 * with `…` (never inside an escape or a surrogate pair).
 */
export function formatMeta(meta: Record<string, unknown> | null | undefined): string {
  if (!meta) return '';
  const parts = Object.entries(meta).map(
    ([name, value]) => `${escapeText(name)}=${escapeText(typeof value === 'string' ? value : JSON.stringify(value))}`,
  );
  const text = parts.join(' ');
  if (text.length <= MAX_META_TEXT) return text;
  // A cut escape (`\u20`) or half a surrogate pair would read as something else.
  return `${text.slice(0, MAX_META_TEXT - 1).replace(/\\u[0-9a-f]{0,3}$|[\ud800-\udbff]$/, '')}…`;
}

/** The first characters of a session id: enough to tell sessions apart on screen. */
export function shortSession(session: string): string {
  return session.length > 8 ? session.slice(0, 8) : session;
}

/**
 * True for a UTF-16 code unit the pages never show as it is: C0 controls,
 * DEL, C1 controls (U+0080-U+009F), and the bidi controls (U+061C, U+200E,
 * U+200F, U+202A-U+202E, U+2066-U+2069), which reorder the text around them
 * and could make one key or meta read as another.
 */
function isHidden(code: number): boolean {
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x061c ||
    code === 0x200e ||
    code === 0x200f ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  );
}

/**
 * `text` with control characters (C0, DEL, C1), bidi controls and lone
 * surrogates written as `\u` and four hex digits, so what a page shows of a
 * key or meta is what it holds, on one line, in its own order.
 */
export function escapeText(text: string): string {
  let shown = '';
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const isHigh = code >= 0xd800 && code <= 0xdbff;
    const isLow = code >= 0xdc00 && code <= 0xdfff;
    const next = text.charCodeAt(i + 1);
    if (isHigh && next >= 0xdc00 && next <= 0xdfff) {
      shown += text.slice(i, i + 2);
      i++;
    } else if (isHigh || isLow || isHidden(code)) {
      shown += `\\u${code.toString(16).padStart(4, '0')}`;
    } else {
      shown += text[i] ?? '';
    }
  }
  return shown;
}

/** A key as shown on screen: {@link escapeText}, and `(empty key)` for `''`. */
export function displayKey(key: string): string {
  return key === '' ? '(empty key)' : escapeText(key);
}

/** Sets an element's text only when it changed, so unchanged cells cost no layout. */
export function setText(element: HTMLElement, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

/** Reads a required element by id; a missing one means the page and its script disagree. */
export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`the page has no <${type.name}> #${id}`);
  return element;
}
