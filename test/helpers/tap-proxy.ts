import { connect, createServer, type Socket } from 'node:net';

/** One connection through a {@link startTapProxy} proxy: the client's side and the proxy's own to the target. */
export interface TapLink {
  readonly client: Socket;
  readonly upstream: Socket;
}

/** A proxy on 127.0.0.1, port 0, whose bytes the test carries itself. */
export interface TapProxy {
  /** `redis://` URL of the proxy. */
  readonly url: string;
  /** Destroys every connection through the proxy and stops listening. */
  close(): void;
}

/**
 * Whether `chunk`, sent by a client to Redis, makes its connection a pub/sub
 * one: a connection becomes one with its SUBSCRIBE, and no command of the
 * store says it otherwise.
 */
export function subscribes(chunk: Buffer): boolean {
  return /subscribe/i.test(chunk.toString('latin1'));
}

/**
 * Starts a proxy to a server on 127.0.0.1:`targetPort` that carries no bytes
 * of its own: `wire` is called with each new connection and attaches the
 * `data` listeners that carry (or hold, or drop) the bytes each way. The
 * proxy ends the other side when one side fails or closes, so a test sees a
 * connection die as a whole.
 */
export async function startTapProxy(targetPort: number, wire: (link: TapLink) => void): Promise<TapProxy> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    wire({ client, upstream });
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('error', () => to.destroy());
      from.on('close', () => {
        to.destroy();
        sockets.delete(from);
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** A proxy to Redis that can hold back what Redis sends on the pub/sub connections open now. */
export interface PubSubGate {
  readonly url: string;
  /** Holds, from now on, the bytes Redis sends on the pub/sub connections open now. */
  hold(): void;
  /** Delivers the held bytes, in order, and carries them again. */
  release(): void;
  close(): void;
}

export async function startPubSubGate(targetPort: number): Promise<PubSubGate> {
  const links = new Set<{ down: Socket; pubSub: boolean; held: Buffer[] | null }>();
  const proxy = await startTapProxy(targetPort, ({ client, upstream }) => {
    const link = { down: client, pubSub: false, held: null as Buffer[] | null };
    links.add(link);
    client.on('data', (chunk: Buffer) => {
      if (subscribes(chunk)) link.pubSub = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (link.held) link.held.push(chunk);
      else client.write(chunk);
    });
    client.on('close', () => links.delete(link));
  });
  return {
    url: proxy.url,
    hold: () => {
      for (const link of links) if (link.pubSub) link.held ??= [];
    },
    release: () => {
      for (const link of links) {
        const held = link.held ?? [];
        link.held = null;
        for (const chunk of held) link.down.write(chunk);
      }
    },
    close: () => proxy.close(),
  };
}
