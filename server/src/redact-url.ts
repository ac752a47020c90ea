import { TOKEN_PARAM } from './auth.js';
import { parseRequestUrl } from './request-url.js';

/** What a secret is replaced with. */
export const REDACTED = 'REDACTED';

/**
 * Query (and fragment) parameters whose values are taken for secrets,
 * compared in lower case: the bearer token browsers put in the URL, the
 * resume secret of session grace, and the usual names of credentials. A
 * `key` is a lock's name here, not a secret, and stays.
 */
const SECRET_PARAMS: ReadonlySet<string> = new Set([TOKEN_PARAM, 'resume', 'password', 'token', 'secret', 'auth']);

/**
 * `url` for logs and messages, with every secret it carries replaced by
 * `REDACTED`: the password of its userinfo (`ws://user:REDACTED@host`) and
 * the value of each parameter named in `SECRET_PARAMS`, in the query or the
 * fragment, whatever the case of its name. `url` is an absolute URL (a
 * tool's `--url`, a Redis URL) or a request target (`/v1?...`, which stays a
 * path, query and fragment).
 *
 * A URL with nothing to redact is returned as given; one with a secret is
 * returned as the URL parser writes it (its query form-encoded). Null when
 * `url` does not parse, or parses with an `@` before its query but no
 * userinfo (`redis:/:pw@host`): a secret could then stand where no parser
 * finds it, so the caller shows a placeholder instead.
 */
export function redactUrl(url: string): string | null {
  const parsed = parseRequestUrl(url);
  if (parsed === null) return null;
  let redacted = redactParams(parsed.searchParams);
  if (parsed.password !== '') {
    parsed.password = REDACTED;
    redacted = true;
  }
  const fragment = new URLSearchParams(parsed.hash.slice(1));
  if (redactParams(fragment)) {
    parsed.hash = fragment.toString();
    redacted = true;
  }
  // A scheme the URL parser does not know (`redis:`) with a slash too few
  // or too many parses without a host, and its userinfo stays in the path
  // where nothing above finds it: such a URL is not shown at all.
  if (!url.startsWith('/') && parsed.username === '' && parsed.password === '' && /@/.test(url.split(/[?#]/, 1)[0] ?? '')) return null;
  if (!redacted) return url;
  return url.startsWith('/') ? `${parsed.pathname}${parsed.search}${parsed.hash}` : parsed.href;
}

/**
 * A request target (`req.url`) for the server's logs, redacted as
 * {@link redactUrl} does: `''` when absent, and a placeholder in place of
 * one that does not parse.
 */
export function redactRequestTarget(target: string | undefined): string {
  if (target === undefined) return '';
  return redactUrl(target) ?? '(unparsable request target)';
}

/**
 * `url` for a message that names it: redacted as {@link redactUrl} does.
 * One that does not parse is shown as given when it has no userinfo, query
 * or fragment (`127.0.0.1:7001`, so the message can say which entry is
 * wrong), and as a placeholder otherwise, since a secret may stand there.
 */
export function shownUrl(url: string): string {
  return redactUrl(url) ?? (/[@?#]/.test(url) ? '(unparsable URL)' : url);
}

/** Replaces the value of every secret parameter of `params`; true when there was one. */
function redactParams(params: URLSearchParams): boolean {
  const secrets = [...new Set(params.keys())].filter((name) => SECRET_PARAMS.has(name.toLowerCase()));
  for (const name of secrets) params.set(name, REDACTED);
  return secrets.length > 0;
}
