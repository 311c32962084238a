/**
 * Operator semantics, exactly the Python runtime's (src/flagstone/runtime/operators.py).
 *
 * Context values follow JSON as Python reads it: `true` never equals `1` (but `[true]`
 * equals `[1]`, as Python's `==` has it), `1` equals `1.0`, and a missing attribute
 * (undefined or null) makes every operator false except `neq`, `not_in` and
 * `exists: false`. Dates parse as Python 3.11's `datetime.fromisoformat`; `matches`
 * patterns arrive translated to ECMAScript by `flagstone build` (src/flagstone/ecmascript.py).
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Context = Readonly<Record<string, unknown>>;
export type Predicate = (value: unknown, operand: any) => boolean;

export const MAX_REGEX_INPUT = 4096;
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

/** Python's truthiness (`bool(x)`) of a JSON value. */
export const truthy = (v: unknown): boolean => (isMapping(v) ? Object.keys(v).length > 0 : Array.isArray(v) ? v.length > 0 : !!v);

// Iterating an operand as Python does: a list's items, a string's code points, a dict's keys.
const anyEqual = (v: unknown, o: any): boolean => {
  for (const x of isMapping(o) ? Object.keys(o) : o) if (jsonEqual(v, x)) return true;
  return false;
};

const requireString = (o: unknown): string => {
  if (typeof o !== "string") throw new TypeError("operand must be a string");
  return o;
};

// --- semver (semver.org §11 precedence) ---------------------------------------------------

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

// --- instants: Python 3.11's datetime.fromisoformat, after replacing "Z" by "+00:00" -------

const isDigit = (c: string | undefined): boolean => !!c && c >= "0" && c <= "9";

// Days since 1970-01-01 (setUTCFullYear, unlike Date.UTC, takes years below 100 as they are).
const civil = (y: number, m: number, d: number): number => new Date(0).setUTCFullYear(y, m - 1, d) / 864e5;
// The Monday of ISO week 1 (the week holding January 4th).
const week1 = (y: number): number => civil(y, 1, 4) - ((((civil(y, 1, 4) + 3) % 7) + 7) % 7);

// Where CPython's fromisoformat splits date from time (_find_isoformat_datetime_separator).
function separatorAt(s: string): number {
  const n = s.length;
  if (n === 7) return 7;
  if (s[4] === "-") return s[5] !== "W" ? 10 : n > 8 && s[8] === "-" ? (n === 9 ? -1 : n > 10 && isDigit(s[10]) ? 8 : 10) : 8;
  if (s[4] !== "W") return 8;
  let i = 7;
  while (i < n && isDigit(s[i])) i++;
  return i < 9 ? i : i % 2 ? 8 : 7;
}

const DATE = /^(\d{4})(-?)(?:(\d\d)\2(\d\d)|W(\d\d)(?:\2([1-7]))?)$/;

/** Days since 1970-01-01 of an ISO date part (YYYY-MM-DD, YYYYMMDD, YYYY-Www[-D], YYYYWww[D]), or null. */
function parseDate(s: string): number | null {
  const [, y, , m, d, w, wd = 1] = DATE.exec(s) ?? [];
  if (!(+y > 0)) return null;
  // An ISO year has as many weeks as lie between its week 1 and the next year's (52 or 53).
  if (w) return +w < 1 || +w > (week1(+y + 1) - week1(+y)) / 7 ? null : week1(+y) + (+w - 1) * 7 + +wd - 1;
  const days = civil(+y, +m, +d);
  return +m < 1 || +m > 12 || +d < 1 || days >= civil(+y, +m + 1, 1) ? null : days;
}

/**
 * HH[:?MM[:?SS[{.,}f+]]] as CPython 3.11's parse_hh_mm_ss_ff reads it, step for step:
 * [hour, minute, second, microseconds] or null. `lenient` is for a time followed by an
 * offset, where CPython accepts its "trailing characters" answer: one stray character after
 * a field, and anything after six fraction digits.
 */
function parseClock(text: string, lenient = false): number[] | null {
  const clock = [0, 0, 0, 0];
  let at = 0;
  let colons = false;
  for (let i = 0; i < 3; i++) {
    const field = text.slice(at, (at += 2));
    if (!DIGITS.test(field) || field.length < 2) return null;
    clock[i] = +field;
    const c = text[at++];
    if (!i) colons = c === ":";
    if (at >= text.length) return lenient || c === undefined ? clock : null;
    if (colons && c === ":") continue;
    if (c === "." || c === ",") break;
    if (colons) return null;
    at--;
  }
  const fraction = text.slice(at);
  if (!DIGITS.test(fraction.slice(0, 6)) || !(lenient || DIGITS.test(fraction))) return null;
  clock[3] = +fraction.slice(0, 6).padEnd(6, "0");
  return clock;
}

/** Epoch seconds of an ISO 8601 string as Python's fromisoformat reads it (naive means UTC), or null. */
export function parseInstant(text: string): number | null {
  const s = text.replace(/Z/g, "+00:00");
  const at = s.length < 7 ? -1 : separatorAt(s);
  const days = at < 0 || at > s.length ? null : parseDate(s.slice(0, at));
  if (days === null) return null;
  let seconds = days * 86400;
  let micros = 0;
  if (at < s.length) {
    const rest = s.slice(at + (s.codePointAt(at)! > 0xffff ? 2 : 1));
    const tz = rest.search(/[+-]/);
    const time = parseClock(tz < 0 ? rest : rest.slice(0, tz), tz >= 0);
    const off = tz < 0 ? [0, 0, 0, 0] : parseClock(rest.slice(tz + 1));
    if (!time || !off || time[0] > 23 || time[1] > 59 || time[2] > 59) return null;
    const sign = rest[tz] === "-" ? -1 : 1;
    const offMicros = ((off[0] * 60 + off[1]) * 60 + off[2]) * 1e6 + off[3];
    if (offMicros >= 864e8) return null;
    seconds += time[0] * 3600 + time[1] * 60 + time[2] - sign * Math.trunc(offMicros / 1e6);
    micros = time[3] - sign * (offMicros % 1e6);
  }
  return micros ? (seconds * 1e6 + micros) / 1e6 : seconds;
}

const toInstant = (value: unknown): number | null => (typeof value === "number" ? value : typeof value === "string" ? parseInstant(value) : null);

// Python's len() counts code points; only a long string needs counting.
export const withinRegexLimit = (v: string): boolean => v.length <= MAX_REGEX_INPUT || (v.length <= 2 * MAX_REGEX_INPUT && [...v].length <= MAX_REGEX_INPUT);

// --- the table ---------------------------------------------------------------------------

const compare =
  (pred: (a: number, b: number) => boolean): Predicate =>
  (v, o) => {
    if (typeof v !== "number") return false;
    if (typeof o !== "number" && typeof o !== "boolean") throw new TypeError("numeric operand expected");
    return pred(v, +o);
  };

const ordered =
  <T>(key: (v: unknown) => T | null, pred: (a: T, b: T) => boolean): Predicate =>
  (v, o) => {
    const a = key(v);
    const b = key(o);
    return a !== null && b !== null && pred(a, b);
  };
const semver = (pred: (c: number) => boolean): Predicate => ordered(semverKey, (a, b) => pred(compareSemver(a, b)));

// `value` is never missing here: the compiled condition decides missing attributes first.
// `matches` takes the compiled RegExp (or the Error of a pattern ECMAScript cannot express).
export const OPERATORS: Record<string, Predicate> = {
  eq: jsonEqual,
  neq: (v, o) => !jsonEqual(v, o),
  in: anyEqual,
  not_in: (v, o) => !anyEqual(v, o),
  contains: (v, o) => (typeof v === "string" ? typeof o === "string" && v.includes(o) : Array.isArray(v) && v.some((x) => jsonEqual(x, o))),
  starts_with: (v, o) => typeof v === "string" && v.startsWith(requireString(o)),
  ends_with: (v, o) => typeof v === "string" && v.endsWith(requireString(o)),
  matches: (v, re: RegExp | Error) => {
    if (typeof v !== "string" || !withinRegexLimit(v)) return false;
    if (re instanceof Error) throw re;
    return re.test(v);
  },
  gt: compare((a, b) => a > b),
  gte: compare((a, b) => a >= b),
  lt: compare((a, b) => a < b),
  lte: compare((a, b) => a <= b),
  semver_eq: semver((c) => !c),
  semver_gt: semver((c) => c > 0),
  semver_gte: semver((c) => c >= 0),
  semver_lt: semver((c) => c < 0),
  semver_lte: semver((c) => c <= 0),
  before: ordered(toInstant, (a, b) => a < b),
  after: ordered(toInstant, (a, b) => a >= b),
};
