import type { Lease, LockClient } from '@lockwire/client';
import { checkConnection } from './cli-connect.js';
import type { SignalRoute } from './cli-run-child.js';

/**
 * How long after what is left of `--wait` the tool gives up on the lock by
 * itself: the server's own not-granted answer, sent when `--wait` ran out
 * there, normally comes first.
 */
export const WAIT_MARGIN_MS = 500;

/** The lock `lockwire run` waits for, and how. */
export interface LockRequest {
  key: string;
  shared: boolean;
  /** What is left of `--wait` after connecting, in ms (0: try once); null waits for ever. */
  wait: number | null;
  /** `--hold`, in ms; null never expires. */
  hold: number | null;
  meta: Record<string, unknown>;
  /** Ping interval and deadline while waiting, in ms; 0 sends no pings. */
  heartbeat: number;
}

/**
 * How the wait for the lock ended: granted; not granted within `--wait`;
 * given up on a signal; or given up because the server stopped answering
 * pings meanwhile. A lease the client had already handed over when the
 * wait was given up comes along, for the caller to release.
 */
export type Acquired =
  | { kind: 'granted'; lease: Lease }
  | { kind: 'not-granted'; lease: Lease | null }
  | { kind: 'interrupted'; signal: NodeJS.Signals; lease: Lease | null }
  | { kind: 'silent'; reason: unknown; lease: Lease | null };

/**
 * Waits for the lock. The server bounds the wait by `--wait` (what is left
 * of it); the tool bounds it too, {@link WAIT_MARGIN_MS} later, and pings the
 * server every `--heartbeat` meanwhile, so a server that stopped answering
 * (paused, or behind a silent path) cannot keep it queued for ever. On a
 * signal, a local deadline or a silent server, the acquire is aborted: the
 * client sends `cancel` and settles the acquire at once, without waiting
 * for the server's answer. The caller then closes the client, which ends
 * the session: the server drops its waiter, and releases a grant that
 * raced the cancel along with the session's other locks.
 *
 * @throws the acquire's error when the server refused it first.
 */
export async function waitForLock(client: LockClient, request: LockRequest, signals: SignalRoute): Promise<Acquired> {
  const controller = new AbortController();
  let givenUp: Exclude<Acquired, { kind: 'granted' }> | undefined;
  const giveUp = (why: Exclude<Acquired, { kind: 'granted' }>) => {
    if (givenUp !== undefined) return;
    givenUp = why;
    controller.abort();
  };
  signals.route((signal) => giveUp({ kind: 'interrupted', signal, lease: null }));
  const deadline =
    request.wait === null ? undefined : setTimeout(() => giveUp({ kind: 'not-granted', lease: null }), request.wait + WAIT_MARGIN_MS);
  const liveness = checkConnection(client, request.heartbeat);
  const onSilent = () => giveUp({ kind: 'silent', reason: liveness.signal.reason, lease: null });
  liveness.signal.addEventListener('abort', onSilent, { once: true });
  try {
    // Bounded once given up: an aborted acquire rejects with the signal's reason at once.
    const outcome = await client
      .acquire(request.key, {
        mode: request.shared ? 'shared' : 'exclusive',
        acquireTimeout: request.wait,
        holdTimeout: request.hold,
        meta: request.meta,
        signal: controller.signal,
      })
      .then(
        (lease) => ({ lease }),
        (error: unknown) => ({ error }),
      );
    const lease = 'lease' in outcome ? outcome.lease : null;
    if (givenUp !== undefined) return { ...givenUp, lease };
    if ('error' in outcome) throw outcome.error;
    return lease === null ? { kind: 'not-granted', lease } : { kind: 'granted', lease };
  } finally {
    clearTimeout(deadline);
    liveness.signal.removeEventListener('abort', onSilent);
    liveness.stop();
  }
}

