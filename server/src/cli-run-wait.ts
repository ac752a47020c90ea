import type { Lease, LockClient } from '@lockwire/client';
import { checkConnection } from './cli-connect.js';
import type { SignalRoute } from './cli-run-child.js';

/**
 * How long after what is left of `--wait` the tool gives up on the lock by
 * itself: the server's own not-granted answer, sent when `--wait` ran out
 * there, normally comes first.
 */
export const WAIT_MARGIN_MS = 500;
/** How long a given-up acquire waits for the server to answer its cancel: a silent server never does. */
export const CANCEL_WAIT_MS = 1000;

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
 * pings meanwhile. A lease granted while the wait was being given up comes
 * along, for the caller to release.
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
 * signal, a local deadline or a silent server, the acquire is aborted (the
 * client sends `cancel`) and its answer awaited for {@link CANCEL_WAIT_MS}
 * at most; the caller then closes the client, which ends the session and
 * whatever the server still queues for it.
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
  let stopWaiting: ReturnType<typeof setTimeout> | undefined;
  try {
    const settled = client
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
    const aborted = new Promise<'given up'>((resolve) => {
      controller.signal.addEventListener('abort', () => resolve('given up'), { once: true });
    });
    let outcome = await Promise.race([settled, aborted]);
    if (outcome === 'given up') {
      // The client waits for the acquire's answer to its cancel; a server that stopped answering never gives it.
      const late = new Promise<'given up'>((resolve) => {
        stopWaiting = setTimeout(() => resolve('given up'), CANCEL_WAIT_MS);
      });
      outcome = await Promise.race([settled, late]);
    }
    const lease = outcome !== 'given up' && 'lease' in outcome ? outcome.lease : null;
    if (givenUp !== undefined) return { ...givenUp, lease };
    if (outcome !== 'given up' && 'error' in outcome) throw outcome.error;
    return lease === null ? { kind: 'not-granted', lease } : { kind: 'granted', lease };
  } finally {
    clearTimeout(deadline);
    clearTimeout(stopWaiting);
    liveness.signal.removeEventListener('abort', onSilent);
    liveness.stop();
  }
}

