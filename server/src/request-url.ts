/** The origin a request's path is read against; only its path and query are ever used. */
const ORIGIN = 'http://localhost';

/**
 * Reads an HTTP request target (`req.url`) as a URL, for its `pathname` and
 * `searchParams`. Never throws: a target that is not a URL (`http://[`, `*`,
 * anything a client can put on the request line) gives null, which callers
 * answer with 400.
 *
 * An origin-form target (one starting with `/`) is all path and query: `//x`
 * is the path `//x`, not a URL of host `x`, as RFC 9112 reads it. Any other
 * target is read as an absolute URL (absolute-form). Absent (as Node never
 * leaves it for a server request) means `/`.
 */
export function parseRequestUrl(target: string | undefined): URL | null {
  const raw = target ?? '/';
  try {
    return raw.startsWith('/') ? new URL(`${ORIGIN}${raw}`) : new URL(raw);
  } catch {
    return null;
  }
}
