// Every figure of the benchmark, in run order; `--only=<name>,...` picks some.
import { redisFigures } from './redis.mjs';
import { scaleFigures } from './scale.mjs';
import { wireFigures } from './wire.mjs';

export const FIGURES = [...wireFigures, ...redisFigures, ...scaleFigures];
