/**
 * The `semver_*` operators (semver.org §11 precedence, Python's `str.strip` first), exactly
 * the Python runtime's. A part of its own: `import "@flagstone/client/semver"` (or
 * `@flagstone/client/full`) adds them to the core, and `Client.load` or a URL add them when
 * a bundle uses them. No module of the core is imported here, so the core stays one chunk.
 */
import type { Predicate } from "../operators.js";

// Python's str.strip(): the characters str.isspace() accepts, which are ECMAScript's \s
// without U+FEFF and with U+001C-U+001F and U+0085.
const STRIP = /^(?:[^\S\ufeff]|[\x1c-\x1f\x85])+|(?:[^\S\ufeff]|[\x1c-\x1f\x85])+$/g;
const SEMVER = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** [major, minor, patch, pre-release identifiers or null], or null. */
export function semverKey(text: unknown): (string | string[] | null)[] | null {
  const m = typeof text === "string" && SEMVER.exec(text.replace(STRIP, ""));
  return m ? [m[1], m[2], m[3], m[4]?.split(".") ?? null] : null;
}

const DIGITS = /^\d+$/;
const compareText = (a: any, b: any): number => (a < b ? -1 : a > b ? 1 : 0);
// Integers of any size, as Python compares them.
const compareInts = (a: string, b: string): number => compareText(BigInt(a), BigInt(b));

export function compareSemver(a: any[], b: any[]): number {
  for (let i = 0; i < 3; i++) {
    const c = compareInts(a[i], b[i]);
    if (c) return c;
  }
  const pa: string[] | null = a[3];
  const pb: string[] | null = b[3];
  if (!pa || !pb) return (pa ? -1 : 0) + (pb ? 1 : 0); // a release sorts after its pre-releases
  for (let i = 0; i < pa.length && i < pb.length; i++) {
    const na = DIGITS.test(pa[i]);
    const c = na === DIGITS.test(pb[i]) ? (na ? compareInts : compareText)(pa[i], pb[i]) : na ? -1 : 1;
    if (c) return c;
  }
  return pa.length - pb.length;
}

// Both sides read by `key`; false when either is not a version (or an instant).
const ordered =
  <T>(key: (v: unknown) => T | null, pred: (a: T, b: T) => boolean): Predicate =>
  (v, o) => {
    const a = key(v);
    const b = key(o);
    return a !== null && b !== null && pred(a, b);
  };
const semver = (pred: (c: number) => boolean): Predicate => ordered(semverKey, (a, b) => pred(compareSemver(a, b)));

export const operators: Record<string, Predicate> = {
  semver_eq: semver((c) => !c),
  semver_gt: semver((c) => c > 0),
  semver_gte: semver((c) => c >= 0),
  semver_lt: semver((c) => c < 0),
  semver_lte: semver((c) => c <= 0),
};
