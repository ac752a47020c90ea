import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_LIST_LIMIT, ErrorCode, MAX_LIST_LIMIT, type ListResult } from '@lockwire/protocol';
import { LockError, toWireError } from './errors.js';
import type { Logger } from './logger.js';
import { parseRequestUrl } from './request-url.js';
import type { LockMetrics } from './metrics.js';
import type { LockStore } from './store.js';
import { createUiRoutes, type UiRoute } from './ui-routes.js';

/** What the HTTP endpoints read from the server they belong to. */
export interface HttpContext {
  readonly store: LockStore;
  readonly logger: Logger;
  /** What `GET /metrics` renders. */
  readonly metrics: Pick<LockMetrics, 'contentType' | 'scrape'>;
  readonly maxKeyLength: number;
  /** True once `close()` began: `/healthz` and `/readyz` answer 503, and every answer ends its connection. */
  isClosing(): boolean;
  sessionCount(): number;
  /** The `list` behind `/v1/locks` for this request, e.g. filtered to its credentials. Default: the store's. */
  listLocks?(prefix: string, limit: number, req: IncomingMessage): Promise<ListResult>;
}

/** A request handler for `http.Server`: the plain HTTP side of lockwire. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

/**
 * Marks an answer written while the server closes as the last of its
 * connection (`Connection: close`), so a keep-alive client (a load
 * balancer's health check, a scraper) lets go of it instead of holding
 * `close()` until Node's keep-alive timeout. Call before the head is
 * written, by whatever writes it (the endpoints, the credentials' refusals).
 */
export function lastIfClosing(server: Pick<HttpContext, 'isClosing'>, res: ServerResponse): ServerResponse {
  if (server.isClosing() && !res.headersSent) res.setHeader('connection', 'close');
  return res;
}

/** Reads `limit` of `/v1/locks`: absent means the default; else an integer in range. */
function parseLimit(raw: string | null): number {
  if (raw === null || raw === '') return DEFAULT_LIST_LIMIT;
  const limit = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(limit >= 1 && limit <= MAX_LIST_LIMIT)) {
    throw new LockError(ErrorCode.BadRequest, `limit: expected an integer from 1 to ${MAX_LIST_LIMIT}`);
  }
  return limit;
}

/**
 * Creates the handler of the HTTP endpoints:
 * - `GET /healthz` (liveness): 200 `{ok:true, store, sessions}`, 503 `{ok:false}` while closing;
 *   it never asks the store, so a store in trouble does not make it fail;
 * - `GET /readyz` (readiness): as `/healthz` while the node serves; 503
 *   `{ok:false, reason:'draining'}` while closing, and `{ok:false,
 *   reason:'store_unavailable', message}` while the store is not ready (see `LockStore#readiness`);
 * - `GET /v1/locks?prefix=&limit=`: the `list` result (no `heldByYou`), 400 on a bad query;
 * - `GET /metrics`: the Prometheus metrics, in the text format (same access rule as `/v1/locks`);
 * - `GET /`, `GET /demo/editor`, `GET /ui/*`: the dashboard, the editor demo and their assets (see `ui-routes.ts`);
 * - a request target that is not a URL: 400 `bad_request`;
 * - anything else: 404 (405 for another method on a known path), as JSON.
 *
 * Once `isClosing()`, answers carry `Connection: close`.
 */
export function createHttpHandler(context: HttpContext): HttpHandler {
  const list = context.listLocks ?? ((prefix, limit) => context.store.list(prefix, limit, null));
  const locks = async (url: URL, res: ServerResponse, req: IncomingMessage) => {
    const prefix = url.searchParams.get('prefix') ?? '';
    try {
      if (prefix.length > context.maxKeyLength) {
        throw new LockError(ErrorCode.BadRequest, `prefix: longer than maxKeyLength (${context.maxKeyLength})`);
      }
      const result = await list(prefix, parseLimit(url.searchParams.get('limit')), req);
      sendJson(lastIfClosing(context, res), 200, result);
    } catch (error) {
      const wire = toWireError(error);
      if (!(error instanceof LockError)) context.logger.error({ err: error }, 'GET /v1/locks failed');
      const status =
        wire.code === ErrorCode.BadRequest ? 400 : wire.code === ErrorCode.StoreUnavailable ? 503 : 500;
      sendJson(lastIfClosing(context, res), status, { error: wire });
    }
  };

  const metrics = async (res: ServerResponse) => {
    try {
      const text = await context.metrics.scrape();
      lastIfClosing(context, res).writeHead(200, {
        'content-type': context.metrics.contentType,
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
      });
      res.end(text);
    } catch (error) {
      context.logger.error({ err: error }, 'GET /metrics failed');
      sendError(lastIfClosing(context, res), 500, ErrorCode.Internal, 'metrics collection failed');
    }
  };

  const ui = createUiRoutes();
  const routes = new Map<string, UiRoute>([
    [
      '/healthz',
      (_url, res) => {
        if (context.isClosing()) sendJson(res, 503, { ok: false });
        else sendJson(res, 200, { ok: true, store: context.store.kind, sessions: context.sessionCount() });
      },
    ],
    [
      '/readyz',
      (_url, res) => {
        if (context.isClosing()) return sendJson(res, 503, { ok: false, reason: 'draining' });
        const store = context.store.readiness?.() ?? { ready: true };
        if (store.ready) return sendJson(res, 200, { ok: true, store: context.store.kind, sessions: context.sessionCount() });
        sendJson(res, 503, { ok: false, reason: ErrorCode.StoreUnavailable, message: store.reason ?? 'the lock store cannot serve' });
      },
    ],
    ['/v1/locks', (url, res, req) => void locks(url, res, req)],
    // Whatever guards `/v1/locks` (credentials) must guard `/metrics` too.
    ['/metrics', (_url, res) => void metrics(res)],
  ]);

  return (req, res) => {
    // Answers written at once; the routes that wait (the list, the metrics) mark theirs when they write.
    lastIfClosing(context, res);
    const url = parseRequestUrl(req.url);
    if (url === null) {
      sendError(res, 400, ErrorCode.BadRequest, 'the request target is not a URL');
      return;
    }
    const route = routes.get(url.pathname) ?? ui(url.pathname);
    if (!route) {
      sendError(res, 404, 'not_found', `no such path: ${url.pathname}`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendError(res, 405, 'method_not_allowed', `${req.method ?? 'this method'} is not allowed here`);
      return;
    }
    route(url, res, req);
  };
}
