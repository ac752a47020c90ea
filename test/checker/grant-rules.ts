/**
 * Rule 4: grants only to requests still waiting for one, and FIFO among the
 * waiters of a key.
 */
import type { AcquireOp, HistoryModel } from './model.js';
import { Rule, ms, type Violation } from './violation.js';

/**
 * What the answers themselves show: a cancel confirmed for a request that was
 * granted; a "not granted" before the acquire timeout could have elapsed (the
 * server's timer starts after the request was sent), or for a request that
 * waits indefinitely; a `lost` with reason `expired` before the hold timeout
 * could have elapsed. Answers given twice and `lost` pushes or releases of
 * locks never granted are found while reading the history (`model.ts`).
 *
 * A grant to a request whose connection had closed cannot be seen by that
 * client; it shows as the key staying held, which rule 5 bounds.
 */
export function checkGrantValidity(model: HistoryModel): Violation[] {
  const violations: Violation[] = model.found.filter((v) => v.rule === Rule.GrantValidity);
  for (const hold of model.holds) {
    const holdTimeout = hold.acquire.invoked.holdTimeout;
    const end = hold.endEvent;
    if (end?.type === 'lost' && end.reason === 'expired' && holdTimeout !== null && end.at < hold.grantLower + holdTimeout) {
      violations.push({
        rule: Rule.GrantValidity,
        message:
          `${hold.client}'s hold of ${JSON.stringify(hold.key)} (token ${hold.token}, holdTimeout ${holdTimeout}) ` +
          `asked for at ${ms(hold.grantLower)} expired early, at ${ms(end.at)}`,
        events: [hold.acquire.invoked, hold.grant, end],
      });
    }
  }
  for (const op of model.acquires) {
    const { invoked, completion } = op;
    if (!completion) continue;
    if (op.outcome === 'granted' && op.cancelReply?.cancelled === true) {
      violations.push({
        rule: Rule.GrantValidity,
        message: `acquire ${String(invoked.id)} of ${op.client} was granted although its cancel was confirmed`,
        events: [invoked, completion, op.cancelReply],
      });
    }
    if (op.outcome !== 'not-granted') continue;
    const timeout = invoked.acquireTimeout;
    if (timeout === null) {
      violations.push({
        rule: Rule.GrantValidity,
        message: `acquire ${String(invoked.id)} of ${op.client} waits indefinitely, yet was answered not granted`,
        events: [invoked, completion],
      });
    } else if (timeout > 0 && completion.at < invoked.at + timeout) {
      violations.push({
        rule: Rule.GrantValidity,
        message:
          `acquire ${String(invoked.id)} of ${op.client} (acquireTimeout ${timeout}) sent at ${ms(invoked.at)} ` +
          `timed out early, at ${ms(completion.at)}`,
        events: [invoked, completion],
      });
    }
  }
  return violations;
}

/**
 * The earliest moment the server can have dropped a waiter that was never
 * granted: its timeout (counted from when it was sent), its cancel being
 * sent, or its connection's close set off by the client. `undefined` when
 * unknowable (closed by the server, failed for another reason).
 */
function leftQueueNoEarlierThan(op: AcquireOp, model: HistoryModel): number | undefined {
  let earliest = Infinity;
  const timeout = op.invoked.acquireTimeout;
  if (timeout !== null) earliest = Math.min(earliest, op.invoked.at + timeout);
  if (op.cancel) earliest = Math.min(earliest, op.cancel.at);
  const closed = model.clients.get(op.client)?.closed;
  if (closed) {
    if (closed.kind === 'server') return undefined;
    earliest = Math.min(earliest, closed.at);
  }
  if (op.outcome === 'failed' && !op.cancel) return undefined;
  return earliest;
}

/**
 * FIFO, for histories without faults (option `fifo`). Waiter A is surely
 * ahead of request B for the same key when A's `queued` acknowledgement
 * arrived before B was sent. Then B (unless a `steal`, which jumps the queue
 * by design, or a holder's re-acquire) must not be granted before A: if both
 * were granted, B's token must be the higher (tokens follow grant order,
 * including the shared requests granted in one step, which the server grants
 * in queue order); if A never was, B's grant must not have arrived before A
 * could have left the queue.
 */
export function checkFifo(model: HistoryModel): Violation[] {
  const violations: Violation[] = [];
  const perKey = new Map<string, AcquireOp[]>();
  for (const op of model.acquires) {
    const list = perKey.get(op.invoked.key) ?? [];
    list.push(op);
    perKey.set(op.invoked.key, list);
  }
  for (const [key, ops] of perKey) {
    const waiters = ops
      .filter((op) => op.queued !== undefined)
      .sort((a, b) => (a.queued?.at ?? 0) - (b.queued?.at ?? 0));
    const granted = ops
      .filter((op) => op.outcome === 'granted' && !op.reacquire && !op.invoked.steal)
      .sort((a, b) => a.invoked.at - b.invoked.at);
    let next = 0;
    let highestToken: AcquireOp | undefined;
    let latestLeave: { op: AcquireOp; at: number } | undefined;
    for (const later of granted) {
      for (; next < waiters.length; next++) {
        const waiter = waiters[next];
        if (!waiter?.queued || waiter.queued.at >= later.invoked.at) break;
        if (waiter.outcome === 'granted') {
          if (!highestToken || (waiter.token ?? 0) > (highestToken.token ?? 0)) highestToken = waiter;
        } else {
          const leave = leftQueueNoEarlierThan(waiter, model);
          if (leave !== undefined && (!latestLeave || leave > latestLeave.at)) latestLeave = { op: waiter, at: leave };
        }
      }
      const grant = later.completion;
      if (!grant || later.token === undefined) continue;
      const ahead = highestToken;
      if (ahead?.token !== undefined && ahead.client !== later.client && ahead.token > later.token && ahead.queued && ahead.completion) {
        violations.push({
          rule: Rule.Fifo,
          message:
            `${ahead.client} was queued for ${JSON.stringify(key)} (${ms(ahead.queued.at)}) before ${later.client} asked ` +
            `(${ms(later.invoked.at)}), yet ${later.client} got the earlier grant (token ${later.token} < ${ahead.token})`,
          events: [ahead.queued, later.invoked, grant, ahead.completion],
        });
      }
      if (latestLeave && latestLeave.op.client !== later.client && grant.at < latestLeave.at && latestLeave.op.queued) {
        violations.push({
          rule: Rule.Fifo,
          message:
            `${later.client} was granted ${JSON.stringify(key)} at ${ms(grant.at)} while ${latestLeave.op.client}, queued ` +
            `ahead of it, could not yet have left the queue (not before ${ms(latestLeave.at)})`,
          events: [latestLeave.op.queued, later.invoked, grant],
        });
      }
    }
  }
  return violations;
}
