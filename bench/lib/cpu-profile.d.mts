/** A frame of a V8 .cpuprofile. */
export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  scriptId?: string;
  columnNumber?: number;
}
/** What these functions read of a V8 .cpuprofile. */
export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  samples: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}
/** The frames V8 reports when no JavaScript of the program runs. */
export const IDLE: string;
/** A frame's label: `name dist/file.js:12`. */
export function frameLabel(callFrame: CallFrame): string;
/** Microseconds of samples per node id. */
export function selfMicros(profile: CpuProfile): Map<number, number>;
/** The stacks, root first, `;`-joined, with their microseconds; idle samples left out unless `idle`. */
export function foldStacks(profile: CpuProfile, options?: { idle?: boolean }): Map<string, number>;
/** Folded stacks as text, one `stack micros` line each, the largest first. */
export function foldedText(folded: Map<string, number>): string;
/** A flame graph of folded stacks as a standalone SVG. */
export function flameGraphSvg(folded: Map<string, number>, options?: { title?: string; width?: number }): string;
