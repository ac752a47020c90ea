import { tlsClosedEarly, tlsRefusal } from './redis-tls.js';

/** What `firstConnect` needs of a node-redis client or cluster. */
export interface Connectable {
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: string, listener: (error: unknown) => void): unknown;
  off(event: string, listener: (error: unknown) => void): unknown;
}

export interface FirstConnectOptions {
  /**
   * The events the client reports connection errors with (`error`; a
   * cluster's nodes: `node-error`). A client reporting `node-error` is a
   * cluster's: a certificate not naming a node is then told as such (see `tlsRefusal`).
   */
  readonly events: readonly string[];
  /** ms after which the attempt is given up. */
  readonly limit: number;
  /** Run once connected, to prove the connection carries commands (a PING). Default: none. */
  readonly check?: () => Promise<unknown>;
  /** The connection is TLS: a connection Redis cuts at once is then reported as a likely refused client certificate. */
  readonly tls: boolean;
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Connects `client`, destroying it when that fails. `connect()` of
 * node-redis retries forever; this gives up after `limit` ms, naming the
 * last error the client reported, so a wrong URL fails loudly, and at once
 * on an error retrying cannot cure: TLS refused the connection (see
 * `tlsRefusal`), reported with what to fix. A TLS connection Redis cut
 * while being proved (or, on a cluster, while its slots were read) fails
 * the start too, as a likely refused client certificate (see `tlsClosedEarly`).
 */
export async function firstConnect(client: Connectable, options: FirstConnectOptions): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last: unknown;
  let refuse: (error: Error) => void = () => {};
  const refused = new Promise<never>((_, reject) => {
    refuse = reject;
  });
  const cluster = options.events.includes('node-error');
  const refusal = (error: unknown) => {
    const problem = tlsRefusal(error, cluster);
    return problem === undefined ? undefined : new Error(`could not connect to Redis: ${problem}`, { cause: error });
  };
  const onError = (error: unknown) => {
    last = error;
    const refusing = refusal(error);
    if (refusing !== undefined) refuse(refusing);
  };
  const lastSeen = (than?: unknown) => (last === undefined || last === than ? '' : ` (last error: ${messageOf(last)})`);
  const connected = async () => {
    try {
      await client.connect();
      await options.check?.();
    } catch (error) {
      // The client may report the cause (a TLS alert) beside the failed call's own error (a reset).
      const refusing = refusal(error) ?? refusal(last);
      if (refusing !== undefined) throw refusing;
      const early = options.tls ? (tlsClosedEarly(error) ?? tlsClosedEarly(last)) : undefined;
      const problem = early ?? `${messageOf(error)}${lastSeen(error)}`;
      throw new Error(`could not connect to Redis: ${problem}`, { cause: error });
    }
  };
  for (const event of options.events) client.on(event, onError);
  try {
    await Promise.race([
      connected(),
      refused,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`could not connect to Redis within ${options.limit} ms${lastSeen()}`)), options.limit);
      }),
    ]);
  } catch (error) {
    client.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
    for (const event of options.events) client.off(event, onError);
  }
}
