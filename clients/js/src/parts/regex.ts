/**
 * The `matches` operator, bounded as the Python runtime bounds it: a value longer than 4,096
 * code points never matches. `flagstone build` writes each pattern in ECMAScript form
 * (src/flagstone/ecmascript.py), compiled here once per condition; a pattern with no such
 * form answers ERROR wherever it is evaluated. A part of its own: `import
 * "@flagstone/client/regex"` (or `@flagstone/client/full`) adds it to the core, and
 * `Client.load` or a URL add it when a bundle uses it. No module of the core is imported
 * here, so the core stays one chunk.
 */
import type { Predicate } from "../operators.js";

export const MAX_REGEX_INPUT = 4096;

// Python's len() counts code points; only a long string needs counting.
export const withinRegexLimit = (v: string): boolean => v.length <= MAX_REGEX_INPUT || (v.length <= 2 * MAX_REGEX_INPUT && [...v].length <= MAX_REGEX_INPUT);

// The operand is the compiled RegExp, or the error of a pattern ECMAScript cannot express.
const matches: Predicate = (v, re: RegExp | Error) => {
  if (typeof v !== "string" || !withinRegexLimit(v)) return false;
  if (re instanceof Error) throw re;
  return re.test(v);
};
matches.prepare = ({ value, ecmascript }, BundleError) => {
  try {
    return new RegExp(...(ecmascript as [string, string]));
  } catch {
    return new BundleError(`pattern ${value} has no ECMAScript form`);
  }
};

export const operators: Record<string, Predicate> = { matches };
