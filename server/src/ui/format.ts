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

/** `user=ana tab=3f2a` from a meta object; `''` for `null`. Long values are cut with `…`. */
export function formatMeta(meta: Record<string, unknown> | null | undefined): string {
  if (!meta) return '';
  const parts = Object.entries(meta).map(
    ([name, value]) => `${name}=${typeof value === 'string' ? value : JSON.stringify(value)}`,
  );
  const text = parts.join(' ');
  return text.length > MAX_META_TEXT ? `${text.slice(0, MAX_META_TEXT - 1)}…` : text;
}

/** The first characters of a session id: enough to tell sessions apart on screen. */
export function shortSession(session: string): string {
  return session.length > 8 ? session.slice(0, 8) : session;
}

/** A key as shown on screen: control characters and lone surrogates made visible, `(empty)` for `''`. */
export function displayKey(key: string): string {
  if (key === '') return '(empty key)';
  let text = '';
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    const isHigh = code >= 0xd800 && code <= 0xdbff;
    const isLow = code >= 0xdc00 && code <= 0xdfff;
    const next = key.charCodeAt(i + 1);
    if (isHigh && next >= 0xdc00 && next <= 0xdfff) {
      text += key.slice(i, i + 2);
      i++;
    } else if (isHigh || isLow || code < 0x20 || code === 0x7f) {
      text += `\\u${code.toString(16).padStart(4, '0')}`;
    } else {
      text += key[i] ?? '';
    }
  }
  return text;
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
