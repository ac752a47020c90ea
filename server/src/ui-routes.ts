import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/**
 * Where `scripts/build-ui.mjs` writes the browser assets. The same relative
 * path works from `src/` (tests run the sources) and from `dist/` (the
 * built package): both are one level below the package root.
 */
const DEFAULT_UI_DIR = fileURLToPath(new URL('../dist/ui/', import.meta.url));

/** Served file names: one path segment of letters, digits and dashes, so no request can leave the folder. */
const ASSET_PATH = /^\/ui\/([a-z0-9-]+\.(?:js|css))$/;

const PAGES: ReadonlyMap<string, string> = new Map([
  ['/', 'dashboard.html'],
  ['/demo/editor', 'editor.html'],
]);

/**
 * True when an `If-None-Match` header names `etag`: RFC 9110 13.1.2 compares
 * weakly, so `W/"x"` matches `"x"` (a proxy that compresses, such as nginx
 * with gzip, hands the browser the weak form), the header may be a list, and
 * `*` matches any current file.
 */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((entry) => {
    const tag = entry.trim();
    return tag === '*' || (tag.startsWith('W/') ? tag.slice(2) : tag) === etag;
  });
}

/**
 * Headers of the pages (not of their scripts): no other site may frame them,
 * so a page of another origin cannot overlay the dashboard's Revoke buttons
 * or the editor and trick a user into clicking them. `X-Frame-Options` for
 * browsers that predate `frame-ancestors`.
 */
const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'x-frame-options': 'DENY',
  'content-security-policy': "frame-ancestors 'none'",
};

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/** Browsers ask every origin for an icon; lockwire has none, and says so without a 404. */
const noIcon: UiRoute = (_url, res) => {
  res.writeHead(204, { 'cache-control': 'max-age=86400' });
  res.end();
};

/** Serves one UI path; see {@link createUiRoutes}. */
export type UiRoute = (url: URL, res: ServerResponse, req: IncomingMessage) => void;

export interface UiRoutesOptions {
  /** The folder of the built assets. Default: the package's `dist/ui/`. */
  dir?: string;
}

interface Asset {
  body: Buffer;
  etag: string;
}

/**
 * The browser side of the server: `GET /` (the live dashboard),
 * `GET /demo/editor` (the exclusive-editing demo) and `GET /ui/<name>.js|css`
 * (their scripts, the stylesheet and `lockwire-client.js`, the browser
 * bundle of `@lockwire/client`), all from the folder `npm run build` fills;
 * `GET /favicon.ico` answers 204.
 *
 * Every response carries a strong ETag and `cache-control: no-cache`: the
 * file names carry no hash, so browsers revalidate, and an unchanged file
 * costs a 304. The pages also carry `X-Frame-Options: DENY` and
 * `Content-Security-Policy: frame-ancestors 'none'`. Each file is read and
 * hashed once, on its first request, and kept in memory by this instance:
 * a UI rebuilt while the server runs is served after a restart. A missing
 * asset answers 404 and is looked for again on the next request; a missing
 * build answers 503 naming the command that makes it.
 *
 * @returns a lookup from a request path to its route, `undefined` when the
 * path is not a UI path.
 */
export function createUiRoutes(options: UiRoutesOptions = {}): (pathname: string) => UiRoute | undefined {
  const dir = options.dir ?? DEFAULT_UI_DIR;
  // The read itself is kept, so requests that come while it runs share it.
  const cache = new Map<string, Promise<Asset | undefined>>();

  const read = async (name: string): Promise<Asset | undefined> => {
    let body: Buffer;
    try {
      body = await readFile(`${dir}${dir.endsWith('/') ? '' : '/'}${name}`);
    } catch {
      // Not built yet, or not a file of the build: looked for again next time.
      cache.delete(name);
      return undefined;
    }
    return { body, etag: `"${createHash('sha1').update(body).digest('base64url')}"` };
  };
  const load = (name: string): Promise<Asset | undefined> => {
    let asset = cache.get(name);
    if (asset === undefined) {
      asset = read(name);
      cache.set(name, asset);
    }
    return asset;
  };

  const serve = async (name: string, res: ServerResponse, req: IncomingMessage, page: boolean) => {
    const asset = await load(name);
    if (!asset) {
      const status = page ? 503 : 404;
      const text = page
        ? `The lockwire UI is not built: run \`npm run build\` (it runs scripts/build-ui.mjs).\n`
        : `no such asset: ${name}\n`;
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
      });
      res.end(text);
      return;
    }
    const extension = name.slice(name.lastIndexOf('.') + 1);
    const headers = {
      etag: asset.etag,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      ...(page ? PAGE_HEADERS : {}),
    };
    if (matchesEtag(req.headers['if-none-match'], asset.etag)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, {
      ...headers,
      'content-type': CONTENT_TYPES[extension] ?? 'application/octet-stream',
      'content-length': asset.body.byteLength,
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  };

  return (pathname) => {
    if (pathname === '/favicon.ico') return noIcon;
    const page = PAGES.get(pathname);
    const name = page ?? ASSET_PATH.exec(pathname)?.[1];
    if (name === undefined) return undefined;
    return (_url, res, req) => {
      serve(name, res, req, page !== undefined).catch((error: unknown) => {
        res.destroy(error instanceof Error ? error : new Error(String(error)));
      });
    };
  };
}
