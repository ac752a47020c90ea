import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListResult } from '@lockwire/protocol';
import type { Authenticator } from './auth.js';
import { lastIfClosing, type HttpContext, type HttpHandler } from './http.js';
import { ALLOW_ALL, listVisible, type Permissions } from './permissions.js';
import { parseRequestUrl } from './request-url.js';
import type { LockStore } from './store.js';

/** Paths served without credentials: health checks and the dashboard's static assets (code, no data). */
function isOpen(pathname: string): boolean {
  return pathname === '/healthz' || pathname === '/readyz' || pathname === '/favicon.ico' || pathname.startsWith('/ui/');
}

function refuse(res: ServerResponse, status: 401 | 403, reason: string): void {
  const code = status === 401 ? 'unauthorized' : 'forbidden';
  const body = JSON.stringify({ error: { code, message: reason } });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * The HTTP side of authentication: wraps the HTTP endpoints so that, with
 * auth on, every path but `/healthz`, `/readyz` and the static assets needs the same
 * credentials as the WebSocket (header or `access_token`), and
 * `/v1/locks` lists only what they may see. A refusal written once
 * `server.isClosing()` ends its connection, as every answer then does.
 */
export function guardHttp(authenticator: Authenticator, store: LockStore, server: Pick<HttpContext, 'isClosing'>) {
  const admitted = new WeakMap<IncomingMessage, Permissions>();

  /** The `listLocks` of the HTTP context: `/v1/locks` filtered to the request's permissions. */
  const listLocks = (prefix: string, limit: number, req: IncomingMessage): Promise<ListResult> =>
    listVisible(admitted.get(req) ?? ALLOW_ALL, prefix, limit, {
      list: (p, l) => store.list(p, l, null),
      status: (key) => store.status(key, null),
    });

  const wrap =
    (inner: HttpHandler): HttpHandler =>
    (req, res) => {
      // A target that does not parse is the inner handler's 400, whoever asks.
      const url = parseRequestUrl(req.url);
      if (url === null || isOpen(url.pathname)) return inner(req, res);
      void authenticator.admit(req).then((admission) => {
        if (!admission.ok) return refuse(lastIfClosing(server, res), admission.status, admission.reason);
        admitted.set(req, admission.permissions);
        inner(req, res);
      });
    };

  return { wrap, listLocks };
}
