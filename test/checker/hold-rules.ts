/**
 * The safety rules over holds: token order (1), exclusive overlap (2) and
 * the fenced resource's verdicts (3).
 */
import type { Hold, HistoryModel } from './model.js';
import { Rule, ms, type Violation } from './violation.js';

function byKey(holds: readonly Hold[]): Map<string, Hold[]> {
  const map = new Map<string, Hold[]>();
  for (const hold of holds) {
    const list = map.get(hold.key) ?? [];
    list.push(hold);
    map.set(hold.key, list);
  }
  return map;
}

const conflict = (a: Hold, b: Hold) => a.mode === 'exclusive' || b.mode === 'exclusive';

/**
 * Rule 1. The server's grant order is not observable, but part of it is: a
 * grant received before another acquire was even sent was made before that
 * one, so its token must be lower. Tokens of one key are also unique.
 */
export function checkTokenOrder(model: HistoryModel): Violation[] {
  const violations: Violation[] = [];
  for (const [key, holds] of byKey(model.holds)) {
    const byToken = new Map<number, Hold>();
    for (const hold of holds) {
      const other = byToken.get(hold.token);
      if (other) {
        violations.push({
          rule: Rule.TokenOrder,
          message: `token ${hold.token} of ${JSON.stringify(key)} was granted twice: to ${other.client} and to ${hold.client}`,
          events: [other.grant, hold.grant],
        });
      } else {
        byToken.set(hold.token, hold);
      }
    }
    const received = [...holds].sort((a, b) => a.grantUpper - b.grantUpper);
    const sent = [...holds].sort((a, b) => a.grantLower - b.grantLower);
    let next = 0;
    let highest: Hold | undefined;
    for (const later of sent) {
      for (; next < received.length; next++) {
        const earlier = received[next];
        if (!earlier || earlier.grantUpper >= later.grantLower) break;
        if (!highest || earlier.token > highest.token) highest = earlier;
      }
      if (highest && highest.token > later.token) {
        violations.push({
          rule: Rule.TokenOrder,
          message:
            `${highest.client} received token ${highest.token} for ${JSON.stringify(key)} at ${ms(highest.grantUpper)}, ` +
            `before ${later.client} sent the acquire (${ms(later.grantLower)}) that got the lower token ${later.token}`,
          events: [highest.grant, later.acquire.invoked, later.grant],
        });
      }
    }
  }
  return violations;
}

/**
 * Rule 2. Each hold is reduced to the interval in which it surely existed at
 * the server, `[grantUpper, surelyUntil]` (see `model.ts`): from the grant's
 * arrival (the server granted earlier) to the last moment the server cannot
 * have ended it yet. Both ends err inwards, so message delays can only hide
 * an overlap, never invent one: an overlap of these intervals is an overlap
 * at the server. Touching intervals (a handoff in one step) do not overlap.
 */
export function checkExclusiveOverlap(model: HistoryModel): Violation[] {
  const violations: Violation[] = [];
  for (const [key, holds] of byKey(model.holds)) {
    const sure = holds
      .filter((hold) => hold.surelyUntil > hold.grantUpper)
      .sort((a, b) => a.grantUpper - b.grantUpper);
    for (let i = 0; i < sure.length; i++) {
      const a = sure[i];
      if (!a) continue;
      for (let j = i + 1; j < sure.length; j++) {
        const b = sure[j];
        if (!b || b.grantUpper >= a.surelyUntil) break;
        if (!conflict(a, b)) continue;
        violations.push({
          rule: Rule.ExclusiveOverlap,
          message:
            `${a.client} (${a.mode}, token ${a.token}) surely held ${JSON.stringify(key)} from ${ms(a.grantUpper)} to ` +
            `${ms(a.surelyUntil)}, yet ${b.client} (${b.mode}, token ${b.token}) was granted it at ${ms(b.grantUpper)}`,
          events: [a.grant, b.grant, ...(a.endEvent ? [a.endEvent] : [])],
        });
      }
    }
  }
  return violations;
}

/**
 * Rule 3. Replays the writes, in the order the resource saw them, against a
 * model fenced register (accept iff the token is at least the highest
 * accepted so far for the key) and compares verdicts. Also: every write
 * carries a token its writer was granted for that key, and a write refused
 * while its writer surely held the key exclusively means someone else wrote
 * with a higher token during that hold.
 */
export function checkFencing(model: HistoryModel): Violation[] {
  const violations: Violation[] = [];
  const holdOf = new Map<string, Hold>();
  const id = (client: string, key: string, token: number) => JSON.stringify([client, key, token]);
  for (const hold of model.holds) holdOf.set(id(hold.client, hold.key, hold.token), hold);
  const highest = new Map<string, { token: number; write: (typeof model.writes)[number] }>();
  for (const write of model.writes) {
    const top = highest.get(write.key);
    const shouldAccept = !top || write.token >= top.token;
    if (shouldAccept) highest.set(write.key, { token: write.token, write });
    if (shouldAccept !== write.accepted) {
      violations.push({
        rule: Rule.Fencing,
        message: write.accepted
          ? `the resource accepted a write to ${JSON.stringify(write.key)} with token ${write.token} from ${write.client} after a write with token ${top?.token ?? '?'}`
          : `the resource refused a write to ${JSON.stringify(write.key)} with token ${write.token} from ${write.client}, the highest token so far`,
        events: top ? [top.write, write] : [write],
      });
    }
    const hold = holdOf.get(id(write.client, write.key, write.token));
    if (!hold) {
      violations.push({
        rule: Rule.Fencing,
        message: `${write.client} wrote ${JSON.stringify(write.key)} with token ${write.token}, which it was never granted`,
        events: [write],
      });
      continue;
    }
    if (
      !write.accepted &&
      hold.mode === 'exclusive' &&
      write.at > hold.grantUpper &&
      write.at < hold.surelyUntil
    ) {
      violations.push({
        rule: Rule.Fencing,
        message:
          `${write.client} was refused a write to ${JSON.stringify(write.key)} with token ${write.token} at ${ms(write.at)}, ` +
          `while it surely held the key exclusively (until ${ms(hold.surelyUntil)}); a higher token was written meanwhile`,
        events: top ? [hold.grant, top.write, write] : [hold.grant, write],
      });
    }
  }
  return violations;
}
