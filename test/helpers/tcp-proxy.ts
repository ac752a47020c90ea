import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * What the proxy does with traffic:
 * - `forward`: carries bytes both ways, and closes one side when the other closes;
 * - `hold`: a silent network path - nothing is carried and nothing is closed,
 *   on the connections already open and on new ones (which are accepted but not
 *   connected onwards). Bytes sent meanwhile wait in the proxy, as TCP would
 *   retransmit them, and flow again on `resume()`;
 * - `refuse`: new connections are closed as soon as they arrive.
 */
export type ProxyMode = 'forward' | 'hold' | 'refuse';

export interface TcpProxyOptions {
  /** Where connections are forwarded to. */
  targetPort: number;
  /** Default `127.0.0.1`. */
  targetHost?: string;
}

/**
 * A TCP proxy on 127.0.0.1, port 0, in front of a server: a test points a
 * client at it and can cut every connection through it (the client sees the
 * socket die without a closing handshake, as on a network switch), block new
 * ones to play an unreachable server, or silence the path without closing
 * anything (half-open).
 */
export interface TcpProxy {
  /** The loopback port clients connect to. */
  readonly port: number;
  /** `target`'s URL with the proxy's host and port in place of the target's. */
  url(target: string): string;
  /** Connections accepted so far (refused ones included). */
  readonly accepted: number;
  /** The current mode. */
  readonly mode: ProxyMode;
  /** Connections currently open through the proxy. */
  connectionCount(): number;
  /** Stops carrying bytes without closing anything (a half-open path). */
  hold(): void;
  /**
   * The connections open now go silent for good, both ways, and nothing of
   * them is closed (a load balancer or NAT that lost their state): what is
   * sent on them is dropped. New connections are carried as the mode says.
   */
  strand(): void;
  /**
   * Resets every open connection, both sides (RST: the peers see the
   * connection die, with no WebSocket or Redis goodbye); the mode stays.
   */
  cut(): void;
  /** Closes new connections at once; with `cut` (default true) also resets the open ones. */
  refuse(options?: { cut?: boolean }): void;
  /** Same as `refuse({ cut: false })`: new connections are closed at once, open ones stay. */
  block(): void;
  /** Same as `resume()`. */
  unblock(): void;
  /** Back to `forward`: held bytes and closes are delivered, held connections go onwards. */
  resume(): void;
  /** Destroys every connection and stops listening. Idempotent. */
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream: Socket | null;
  /** Bytes that arrived while holding, per direction, delivered on resume. */
  toUpstream: Buffer[];
  toClient: Buffer[];
  /** A side closed while holding: the other side is ended on resume. */
  clientEnded: boolean;
  upstreamEnded: boolean;
  /** Silent for good (see `strand`). */
  stranded: boolean;
}

/**
 * Starts a proxy on `127.0.0.1:0` forwarding to the target (a port on
 * 127.0.0.1, or options). Every open connection is tracked so `cut()` and
 * `close()` can end them.
 */
export async function startTcpProxy(target: number | TcpProxyOptions): Promise<TcpProxy> {
  const options: TcpProxyOptions = typeof target === 'number' ? { targetPort: target } : target;
  const targetHost = options.targetHost ?? '127.0.0.1';
  const links = new Set<Link>();
  let mode: ProxyMode = 'forward';
  let accepted = 0;
  let closed: Promise<void> | null = null;

  const destroy = (link: Link) => {
    links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  };
  const reset = (link: Link) => {
    links.delete(link);
    for (const socket of [link.client, link.upstream]) {
      if (socket && !socket.destroyed) socket.resetAndDestroy();
    }
  };

  const deliver = (link: Link) => {
    const { client, upstream } = link;
    if (!upstream) return;
    for (const chunk of link.toUpstream.splice(0)) upstream.write(chunk);
    for (const chunk of link.toClient.splice(0)) client.write(chunk);
    if (link.clientEnded) upstream.end();
    if (link.upstreamEnded) client.end();
  };

  const openUpstream = (link: Link) => {
    const upstream = connect({ host: targetHost, port: options.targetPort });
    link.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('data', (chunk: Buffer) => {
      if (link.stranded) return;
      if (mode === 'hold') link.toClient.push(chunk);
      else link.client.write(chunk);
    });
    upstream.on('end', () => {
      if (link.stranded) return;
      if (mode === 'hold') link.upstreamEnded = true;
      else link.client.end();
    });
    upstream.on('error', () => {
      if (mode !== 'hold' && !link.stranded) destroy(link);
    });
    upstream.on('close', () => {
      if (link.stranded) return;
      if (mode === 'hold') link.upstreamEnded = true;
      else destroy(link);
    });
    // Bytes the client sent before the upstream existed.
    for (const chunk of link.toUpstream.splice(0)) upstream.write(chunk);
    if (link.clientEnded) upstream.end();
  };

  const server: Server = createServer((client) => {
    accepted += 1;
    if (mode === 'refuse') {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const link: Link = { client, upstream: null, toUpstream: [], toClient: [], clientEnded: false, upstreamEnded: false, stranded: false };
    links.add(link);
    client.on('data', (chunk: Buffer) => {
      if (link.stranded) return;
      if (mode === 'hold' || !link.upstream) link.toUpstream.push(chunk);
      else link.upstream.write(chunk);
    });
    client.on('end', () => {
      if (link.stranded) return;
      if (mode === 'hold' || !link.upstream) link.clientEnded = true;
      else link.upstream.end();
    });
    client.on('error', () => {
      if (mode !== 'hold' && !link.stranded) destroy(link);
    });
    client.on('close', () => {
      if (link.stranded) return;
      if (mode === 'hold') link.clientEnded = true;
      else destroy(link);
    });
    if (mode === 'forward') openUpstream(link);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const cut = () => {
    for (const link of [...links]) reset(link);
  };
  const resume = () => {
    mode = 'forward';
    for (const link of [...links]) {
      if (link.stranded) continue;
      if (link.client.destroyed && (link.upstream === null || link.upstream.destroyed)) {
        links.delete(link);
        continue;
      }
      // A side that closed while holding is ended on the other side after its held bytes.
      if (!link.upstream) openUpstream(link);
      else deliver(link);
    }
  };

  return {
    port,
    url(targetUrl) {
      const url = new URL(targetUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    get accepted() {
      return accepted;
    },
    get mode() {
      return mode;
    },
    connectionCount: () => links.size,
    hold() {
      mode = 'hold';
    },
    strand() {
      for (const link of links) link.stranded = true;
    },
    cut,
    refuse(refuseOptions = {}) {
      mode = 'refuse';
      if (refuseOptions.cut ?? true) cut();
    },
    resume,
    block() {
      mode = 'refuse';
    },
    unblock: resume,
    close() {
      closed ??= new Promise<void>((resolve) => {
        cut();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}
