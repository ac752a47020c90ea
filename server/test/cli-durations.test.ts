import { expect, it } from 'vitest';
import { durationProblem, parseDuration } from '../src/cli-connect.js';

it('reads milliseconds and ms, s, m, h durations up to 2147483647 ms', () => {
  expect(parseDuration('250')).toBe(250);
  expect(parseDuration('1.5s')).toBe(1500);
  expect(parseDuration('10m')).toBe(600_000);
  expect(parseDuration('596h')).toBe(2_145_600_000);
  expect(parseDuration('597h')).toBeNull();
  expect(parseDuration('5d')).toBeNull();
});

it('says a duration over the longest one is too long, not that it is not a duration', () => {
  expect(durationProblem('--wait', '999h', 'expected e.g. 30s')).toBe('--wait "999h": at most 2147483647ms (about 24 days)');
  expect(durationProblem('--wait', '2147483648', 'expected e.g. 30s')).toBe('--wait "2147483648": at most 2147483647ms (about 24 days)');
  expect(durationProblem('--wait', 'soon', 'expected e.g. 30s')).toBe('--wait "soon": expected e.g. 30s');
  expect(durationProblem('--wait', '5d', 'expected e.g. 30s')).toBe('--wait "5d": expected e.g. 30s');
});
