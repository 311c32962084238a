/**
 * Operator semantics, exactly the Python runtime's (src/flagstone/runtime/operators.py).
 *
 * Operands have the types the bundle schema gives each operator (a list for `in`, a string
 * for `starts_with`, a number for `gt`, a boolean for `exists`): the Python runtime refuses
 * any other bundle, and here such an operand gives some answer, never an exception.
 *
 * Context values follow JSON as Python reads it: `true` never equals `1` (but `[true]`
 * equals `[1]`, as Python's `==` has it), `1` equals `1.0`, and a missing attribute
 * (undefined or null) makes every operator false except `neq`, `not_in` and
 * `exists: false`. Dates (Python 3.11's `datetime.fromisoformat`), semver and `matches` are
 * parts of their own (parts/dates.ts, parts/semver.ts, parts/regex.ts).
 */
import type { BundleError } from "./errors.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Context = Readonly<Record<string, unknown>>;
/**
 * An operator: the test of a context value against the condition's operand. `prepare`, when
 * there, turns the condition into the operand once at compile time (a pattern into a RegExp).
 */
export type Predicate = ((value: unknown, operand: any) => boolean) & { prepare?: (condition: any, error: typeof BundleError) => unknown };
export const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

export const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** `ctx.get(attr)`: own properties only, so "constructor" is an attribute like any other. */
export const get = (ctx: unknown, attr: string): unknown => (isMapping(ctx) && hasOwn(ctx, attr) ? ctx[attr] : undefined);

// A property-read site is fast while it sees few names; one site for every attribute turns
// megamorphic in V8 (about 4x slower a read). So the first 15 attribute names read through
// sites of their own; later ones share the last.
type Reader = (attr: string) => (ctx: Context) => unknown;
const SITES: Reader[] = [
  (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a],
  (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a],
  (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a],
  (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a], (a) => (c) => c[a],
];
const siteOf = new Map<string, number>();

/** A reader of one attribute compiled once: a plain property read unless the name is inherited. */
export function getter(attr: string): (ctx: Context) => unknown {
  if (attr in Object.prototype) return (ctx) => get(ctx, attr);
  if (!siteOf.has(attr) && siteOf.size < SITES.length - 1) siteOf.set(attr, siteOf.size);
  return SITES[siteOf.get(attr) ?? SITES.length - 1](attr);
}

/** The attribute's value; a dotted name is first a literal key, then a path. */
export function lookup(ctx: Context, attr: string): unknown {
  let node: unknown = get(ctx, attr);
  if (node != null || !attr.includes(".")) return node;
  node = ctx;
  for (const part of attr.split(".")) node = get(node, part);
  return node;
}

// Python's `==` on JSON values: booleans are the integers 0 and 1 inside containers.
function pyEqual(a: any, b: any): boolean {
  const ta = typeof a;
  const tb = typeof b;
  if ((ta === "number" || ta === "boolean") && (tb === "number" || tb === "boolean")) return +a === +b;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEqual(x, b[i]));
  if (isMapping(a)) {
    const keys = Object.keys(a);
    return isMapping(b) && keys.length === Object.keys(b).length && keys.every((k) => hasOwn(b, k) && pyEqual(a[k], b[k]));
  }
  return a === b || (a == null && b == null);
}

export const jsonEqual = (a: unknown, b: unknown): boolean => (typeof a === "boolean" || typeof b === "boolean" ? a === b : pyEqual(a, b));

// The operand of `in` and `not_in` is a list (the bundle schema says so).
const anyEqual = (v: unknown, o: unknown[]): boolean => o.some((x) => jsonEqual(v, x));

// --- the table ---------------------------------------------------------------------------

const compare =
  (pred: (a: number, b: number) => boolean): Predicate =>
  (v, o) =>
    typeof v === "number" && pred(v, o);

// `value` is never missing here: the compiled condition decides missing attributes first.
export const OPERATORS: Record<string, Predicate> = {
  eq: jsonEqual,
  neq: (v, o) => !jsonEqual(v, o),
  in: anyEqual,
  not_in: (v, o) => !anyEqual(v, o),
  contains: (v, o) => (typeof v === "string" ? typeof o === "string" && v.includes(o) : Array.isArray(v) && v.some((x) => jsonEqual(x, o))),
  starts_with: (v, o) => typeof v === "string" && v.startsWith(o),
  ends_with: (v, o) => typeof v === "string" && v.endsWith(o),
  gt: compare((a, b) => a > b),
  gte: compare((a, b) => a >= b),
  lt: compare((a, b) => a < b),
  lte: compare((a, b) => a <= b),
};

/**
 * The operators of the parts with entry points of their own, which add them to OPERATORS
 * when imported: `before`/`after` (parts/dates.ts, `@flagstone/client/dates`), `semver_*`
 * (parts/semver.ts, `@flagstone/client/semver`) and `matches` (parts/regex.ts,
 * `@flagstone/client/regex`). A bundle that uses one not added is refused at load, naming
 * the import; `Client.load` and a URL add them themselves.
 */
export const partOf = (op: string): string | undefined =>
  op === "before" || op === "after" ? "dates" : /^semver_(eq|[gl]te?)$/.test(op) ? "semver" : op === "matches" ? "regex" : undefined;
