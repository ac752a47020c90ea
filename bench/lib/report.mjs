// The benchmark's output: the machine it ran on, and each figure as a row of
// value, anchor (measured in the same run), ratio and target.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { formatNumber } from './stats.mjs';

/** nproc, the CPU model from /proc/cpuinfo, memory and the Node version. */
export function describeMachine() {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) model = line.split(':')[1]?.trim() ?? model;
  } catch {
    // Not Linux: keep os.cpus()'s model.
  }
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    // No coreutils: keep os.cpus()'s count.
  }
  return {
    nproc,
    cpu: model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    pinning: 'not pinned',
  };
}

/**
 * One row of the results table.
 * @typedef {{ figure: string, value: number, unit: string, anchor?: number, anchorLabel?: string,
 *   ratio?: number, target: string, met: boolean | null, note?: string }} Row
 */

/** Whether a row's target holds: `null` for a row without one (a reference figure). */
export function check(condition) {
  return condition === null ? null : Boolean(condition);
}

const metCell = (met) => (met === null ? '' : met ? 'yes' : '**no**');

/** The markdown table of `rows`. */
export function markdownTable(rows) {
  const lines = [
    '| figure | value | anchor (same run) | ratio | target | met |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const row of rows) {
    const value = `${formatNumber(row.value)} ${row.unit}`;
    const anchor = row.anchor === undefined ? '-' : `${formatNumber(row.anchor)} ${row.unit} (${row.anchorLabel ?? ''})`;
    const ratio = row.ratio === undefined ? '-' : `${formatNumber(row.ratio)}x`;
    const figure = row.note ? `${row.figure} <br><sub>${row.note}</sub>` : row.figure;
    lines.push(`| ${figure} | ${value} | ${anchor} | ${ratio} | ${row.target} | ${metCell(row.met)} |`);
  }
  return lines.join('\n');
}

/** The machine as one markdown line. */
export function machineLine(machine) {
  return `${machine.nproc} CPUs (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ${machine.pinning}`;
}
