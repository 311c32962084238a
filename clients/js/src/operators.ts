/**
 * Operator semantics, exactly the Python runtime's (src/flagstone/runtime/operators.py).
 *
 * Context values follow JSON as Python reads it: `true` never equals `1` (but `[true]`
 * equals `[1]`, as Python's `==` has it), `1` equals `1.0`, and a missing attribute
 * (undefined or null) makes every operator false except `neq`, `not_in` and
 * `exists: false`. Dates parse as Python 3.11's `datetime.fromisoformat`, regular
 * expressions are translated from Python `re` syntax (see `translateRegex`).
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Context = Readonly<Record<string, unknown>>;
export type Predicate = (value: unknown, operand: any) => boolean;

export const MAX_REGEX_INPUT = 4096;
const hasOwn = Object.prototype.hasOwnProperty;

export const isMapping = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** `ctx.get(attr)`: own properties only, so "constructor" is an attribute like any other. */
export const get = (ctx: unknown, attr: string): unknown =>
  isMapping(ctx) && hasOwn.call(ctx, attr) ? ctx[attr] : undefined;

/** A reader of one attribute compiled once: a plain property read unless the name is inherited. */
export const getter = (attr: string): ((ctx: Context) => unknown) =>
  attr in Object.prototype ? (ctx) => get(ctx, attr) : (ctx) => ctx[attr];

/** The attribute's value; a dotted name is first a literal key, then a path. */
export function lookup(ctx: Context, attr: string): unknown {
  const value = get(ctx, attr);
  if (value != null || !attr.includes(".")) return value;
  let node: unknown = ctx;
  for (const part of attr.split(".")) {
    if (!isMapping(node)) return undefined;
    node = get(node, part);
  }
  return node;
}

// Python's `==` on JSON values: booleans are the integers 0 and 1 inside containers.
function pyEqual(a: unknown, b: unknown): boolean {
  const ta = typeof a;
  const tb = typeof b;
  if ((ta === "number" || ta === "boolean") && (tb === "number" || tb === "boolean")) return +a! === +b!;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => pyEqual(x, b[i]));
  if (isMapping(a)) {
    if (!isMapping(b)) return false;
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => hasOwn.call(b, k) && pyEqual(a[k], b[k]));
  }
  return a === b || (a == null && b == null);
}

export const jsonEqual = (a: unknown, b: unknown): boolean =>
  typeof a === "boolean" || typeof b === "boolean" ? a === b : pyEqual(a, b);

/** Python's truthiness (`bool(x)`) of a JSON value. */
export const truthy = (v: unknown): boolean =>
  Array.isArray(v) ? v.length > 0 : isMapping(v) ? Object.keys(v).length > 0 : typeof v === "number" ? v !== 0 : !!v;

// Iterating an operand as Python does: a list's items, a string's code points, a dict's keys.
const items = (o: unknown): Iterable<unknown> => (isMapping(o) ? Object.keys(o) : (o as Iterable<unknown>));

const anyEqual = (v: unknown, o: unknown): boolean => {
  for (const x of items(o)) if (jsonEqual(v, x)) return true;
  return false;
};

function requireString(o: unknown): string {
  if (typeof o !== "string") throw new TypeError("operand must be a string");
  return o;
}

// --- semver (semver.org §11 precedence) ---------------------------------------------------

const PY_SPACE = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
const SEMVER = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

type SemverKey = [string, string, string, string[] | null];
const semverCache = new Map<string, SemverKey | null>();

export function semverKey(text: unknown): SemverKey | null {
  if (typeof text !== "string") return null;
  let key = semverCache.get(text);
  if (key === undefined) {
    const m = SEMVER.exec(text.replace(STRIP, ""));
    key = m ? [m[1], m[2], m[3], m[4] === undefined ? null : m[4].split(".")] : null;
    if (semverCache.size > 4096) semverCache.clear();
    semverCache.set(text, key);
  }
  return key;
}

const NUMERIC = /^\d+$/;
// Integers of any size, as Python compares them: leading zeros dropped, then length, then digits.
function compareInts(a: string, b: string): number {
  a = a.replace(/^0+(?=.)/, "");
  b = b.replace(/^0+(?=.)/, "");
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export function compareSemver(a: SemverKey, b: SemverKey): number {
  for (let i = 0; i < 3; i++) {
    const c = compareInts(a[i] as string, b[i] as string);
    if (c) return c;
  }
  const pa = a[3];
  const pb = b[3];
  if (!pa || !pb) return (pa ? -1 : 0) + (pb ? 1 : 0); // a release sorts after its pre-releases
  for (let i = 0; i < pa.length && i < pb.length; i++) {
    const na = NUMERIC.test(pa[i]);
    const nb = NUMERIC.test(pb[i]);
    const c = na && nb ? compareInts(pa[i], pb[i]) : na !== nb ? (na ? -1 : 1) : pa[i] < pb[i] ? -1 : pa[i] > pb[i] ? 1 : 0;
    if (c) return c;
  }
  return pa.length - pb.length;
}

// --- instants: Python 3.11's datetime.fromisoformat, after replacing "Z" by "+00:00" -------

const DIGIT = /^[0-9]$/;
const isDigit = (c: string | undefined): boolean => c !== undefined && DIGIT.test(c);

function digits(s: string, at: number, n: number): number | null {
  const part = s.slice(at, at + n);
  return part.length === n && /^[0-9]+$/.test(part) ? +part : null;
}

function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}

const isLeap = (y: number): boolean => y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function separatorAt(s: string): number {
  const n = s.length;
  if (n === 7) return 7;
  if (s[4] === "-") {
    if (s[5] !== "W") return 10;
    if (n > 8 && s[8] === "-") return n === 9 ? -1 : n > 10 && isDigit(s[10]) ? 8 : 10;
    return 8;
  }
  if (s[4] !== "W") return 8;
  let i = 7;
  while (i < n && isDigit(s[i])) i++;
  return i < 9 ? i : i % 2 === 0 ? 7 : 8;
}

/** Days since 1970-01-01 of an ISO date part, or null. */
function parseDate(s: string): number | null {
  const year = digits(s, 0, 4);
  if (year === null || year < 1) return null;
  const dash = s[4] === "-";
  let p = dash ? 5 : 4;
  if (s[p] === "W") {
    const week = digits(s, ++p, 2);
    if (week === null) return null;
    p += 2;
    let day = 1;
    if (p < s.length) {
      if (dash && s[p++] !== "-") return null;
      const d = digits(s, p++, 1);
      if (d === null) return null;
      day = d;
    }
    if (p !== s.length) return null;
    const jan1 = daysFromCivil(year, 1, 1);
    const weekday = (((jan1 + 3) % 7) + 7) % 7; // 0 = Monday
    const long = weekday === 3 || (weekday === 2 && isLeap(year));
    if (week < 1 || week > (long ? 53 : 52) || day < 1 || day > 7) return null;
    const monday = jan1 - weekday + (weekday > 3 ? 7 : 0);
    return monday + (week - 1) * 7 + day - 1;
  }
  const month = digits(s, p, 2);
  p += 2;
  if (month === null || (dash && s[p++] !== "-")) return null;
  const day = digits(s, p, 2);
  if (day === null || p + 2 !== s.length || month < 1 || month > 12) return null;
  if (day < 1 || day > (month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1])) return null;
  return daysFromCivil(year, month, day);
}

/**
 * HH[:?MM[:?SS[{.,}f+]]] over s[from, to), as CPython's parse_hh_mm_ss_ff reads it:
 * [hour, minute, second, microseconds, whether anything follows] or null.
 */
function parseClock(s: string, from: number, to: number): [number, number, number, number, boolean] | null {
  const v = [0, 0, 0];
  let p = from;
  let sep = true;
  for (let i = 0; i < 3; i++) {
    const d = p + 2 <= to ? digits(s, p, 2) : null;
    if (d === null) return null;
    v[i] = d;
    p += 2;
    const c = s[p++];
    if (i === 0) sep = c === ":";
    if (p >= to) return [v[0], v[1], v[2], 0, c !== undefined];
    if (sep && c === ":") continue;
    if (c === "." || c === ",") break;
    if (sep) return null;
    p--;
  }
  const take = Math.min(to - p, 6);
  const frac = take > 0 ? digits(s, p, take) : null;
  if (frac === null) return null;
  p += take;
  while (p < s.length && isDigit(s[p])) p++;
  return [v[0], v[1], v[2], frac * 10 ** (6 - take), p < s.length];
}

/** Epoch seconds of an ISO 8601 string as Python's fromisoformat reads it (naive means UTC), or null. */
export function parseInstant(text: string): number | null {
  const s = text.replace(/Z/g, "+00:00");
  if (s.length < 7) return null;
  const at = separatorAt(s);
  if (at < 0 || at > s.length) return null;
  const days = parseDate(s.slice(0, at));
  if (days === null) return null;
  let seconds = days * 86400;
  let micros = 0;
  if (at < s.length) {
    const from = at + (s.codePointAt(at)! > 0xffff ? 2 : 1);
    let tz = from;
    while (tz < s.length && !"+-".includes(s[tz])) tz++;
    const clock = parseClock(s, from, tz);
    if (clock === null) return null;
    const [h, m, sec, us, trailing] = clock;
    if (h > 23 || m > 59 || sec > 59) return null;
    if (tz === s.length && trailing) return null;
    seconds += h * 3600 + m * 60 + sec;
    micros = us;
    if (tz < s.length) {
      const off = parseClock(s, tz + 1, s.length);
      if (off === null || off[4]) return null;
      const sign = s[tz] === "-" ? -1 : 1;
      const offMicros = ((off[0] * 60 + off[1]) * 60 + off[2]) * 1e6 + off[3];
      if (offMicros >= 86400e6) return null;
      seconds -= sign * Math.trunc(offMicros / 1e6);
      micros -= sign * (offMicros % 1e6);
    }
  }
  return micros ? (seconds * 1e6 + micros) / 1e6 : seconds;
}

export const toInstant = (value: unknown): number | null =>
  typeof value === "number" ? value : typeof value === "string" ? parseInstant(value) : null;

// --- regular expressions ----------------------------------------------------------------

const WORD = "\\p{L}\\p{N}_"; // Python's \w: str.isalnum() or "_"
const CLASS_ESCAPES: Record<string, string> = { d: "\\p{Nd}", D: "\\P{Nd}", w: WORD, s: PY_SPACE, b: "\\x08" };
const SYNTAX = "^$\\.*+?()[]{}|/";
const hex = (c: string): string => `\\u{${c.codePointAt(0)!.toString(16)}}`;

/**
 * A Python `re` pattern as an equivalent ECMAScript `u` RegExp: Unicode \d \w \s \b, `$`
 * also before a final newline, `.` everything but "\n", (?P<name>), leading (?aims)
 * flags, literal braces. Constructs JavaScript cannot express (atomic groups, possessive
 * quantifiers, scoped or verbose flags, conditionals) throw, so the flag answers ERROR.
 */
export function translateRegex(pattern: string): RegExp {
  let flags = "";
  const lead = /^\(\?([aiLmsux]+)\)/.exec(pattern);
  if (lead) {
    flags = lead[1];
    pattern = pattern.slice(lead[0].length);
  }
  if (/[xL]/.test(flags)) throw new SyntaxError("verbose and locale flags are not supported");
  const ascii = flags.includes("a");
  const multiline = flags.includes("m");
  const w = ascii ? "a-zA-Z0-9_" : WORD;
  const outside: Record<string, string> = {
    d: ascii ? "[0-9]" : "\\p{Nd}",
    D: ascii ? "[^0-9]" : "\\P{Nd}",
    w: `[${w}]`,
    W: `[^${w}]`,
    s: ascii ? "[\\t-\\r ]" : `[${PY_SPACE}]`,
    S: ascii ? "[^\\t-\\r ]" : `[^${PY_SPACE}]`,
    b: `(?:(?<=[${w}])(?![${w}])|(?<![${w}])(?=[${w}]))`,
    B: `(?:(?<=[${w}])(?=[${w}])|(?<![${w}])(?![${w}]))`,
    A: "^",
    Z: "$",
    a: "\\x07",
  };
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    const rest = pattern.slice(i);
    if (c === "\\") {
      const e = pattern[++i];
      if (e === undefined) throw new SyntaxError("trailing backslash");
      let m: RegExpExecArray | null;
      if (inClass && e in CLASS_ESCAPES && !ascii) out += CLASS_ESCAPES[e];
      else if (inClass && (e === "W" || e === "S")) throw new SyntaxError(`\\${e} inside a character class`);
      else if (!inClass && e in outside) out += outside[e];
      else if ((m = /^U([0-9a-fA-F]{8})/.exec(pattern.slice(i)))) {
        out += `\\u{${m[1]}}`;
        i += 8;
      } else if ((m = /^0[0-7]{0,2}|^[1-7][0-7]{2}/.exec(pattern.slice(i)))) {
        out += `\\u{${parseInt(m[0], 8).toString(16)}}`;
        i += m[0].length - 1;
      } else if (/[A-Za-z0-9]/.test(e)) out += "\\" + e;
      else if (SYNTAX.includes(e) || (inClass && e === "-")) out += "\\" + e;
      else out += hex(e);
    } else if (inClass) {
      if (c === "]") inClass = false;
      out += c === "[" ? "\\[" : c;
    } else if (c === "[") {
      inClass = true;
      const neg = pattern[i + 1] === "^";
      out += neg ? "[^" : "[";
      if (neg) i++;
      if (pattern[i + 1] === "]") {
        out += "\\]";
        i++;
      }
    } else if (c === "(" && pattern[i + 1] === "?") {
      const m = /^\(\?(P<|P=(\w+)\)|#[^)]*\)|[:=!]|<[=!]|<)/.exec(rest);
      if (!m || m[1] === "<") throw new SyntaxError(`unsupported group ${rest.slice(0, 4)}`);
      out += m[1] === "P<" ? "(?<" : m[2] ? `\\k<${m[2]}>` : m[1][0] === "#" ? "" : m[0];
      i += m[0].length - 1;
    } else if (c === "{") {
      const m = /^\{(\d*)(,?)(\d*)\}/.exec(rest);
      if (m && (m[1] || (m[2] && m[3]))) {
        out += `{${m[1] || 0}${m[2]}${m[3]}}`;
        i += m[0].length - 1;
        if (/^[+]/.test(pattern.slice(i + 1))) throw new SyntaxError("possessive quantifier");
      } else out += "\\{";
    } else if (c === "}" || c === "]") out += "\\" + c;
    // No lookaround at the edges: V8 lets `(?<![\s\S])` match inside a surrogate pair.
    else if (c === "$") out += multiline ? "(?=\\n|$)" : "(?=\\n?$)";
    else if (c === "^") out += multiline ? "(?:^|(?<=\\n))" : "^";
    else if (c === ".") out += flags.includes("s") ? "[\\s\\S]" : "[^\\n]";
    else if ("*+?".includes(c) && pattern[i + 1] === "+") throw new SyntaxError("possessive quantifier");
    else out += c;
  }
  return new RegExp(out, flags.includes("i") ? "iu" : "u");
}

const regexCache = new Map<string, RegExp>();
export function compileRegex(pattern: unknown): RegExp {
  const key = requireString(pattern);
  let re = regexCache.get(key);
  if (!re) {
    re = translateRegex(key);
    if (regexCache.size > 1024) regexCache.clear();
    regexCache.set(key, re);
  }
  return re;
}

// Python's len() counts code points; only a long string needs counting.
export const withinRegexLimit = (v: string): boolean =>
  v.length <= MAX_REGEX_INPUT || (v.length <= 2 * MAX_REGEX_INPUT && [...v].length <= MAX_REGEX_INPUT);

// --- the table ---------------------------------------------------------------------------

const compare =
  (pred: (a: number, b: number) => boolean): Predicate =>
  (v, o) => {
    if (typeof v !== "number") return false;
    if (typeof o !== "number" && typeof o !== "boolean") throw new TypeError("numeric operand expected");
    return pred(v, +o);
  };

const semver =
  (pred: (c: number) => boolean): Predicate =>
  (v, o) => {
    const a = semverKey(v);
    const b = semverKey(o);
    return a !== null && b !== null && pred(compareSemver(a, b));
  };

const instant =
  (pred: (a: number, b: number) => boolean): Predicate =>
  (v, o) => {
    const a = toInstant(v);
    const b = toInstant(o);
    return a !== null && b !== null && pred(a, b);
  };

// `value` is never missing here: `apply` decides missing attributes first.
export const OPERATORS: Record<string, Predicate> = {
  eq: jsonEqual,
  neq: (v, o) => !jsonEqual(v, o),
  in: anyEqual,
  not_in: (v, o) => !anyEqual(v, o),
  contains: (v, o) =>
    typeof v === "string" ? typeof o === "string" && v.includes(o) : Array.isArray(v) && v.some((x) => jsonEqual(x, o)),
  starts_with: (v, o) => typeof v === "string" && v.startsWith(requireString(o)),
  ends_with: (v, o) => typeof v === "string" && v.endsWith(requireString(o)),
  matches: (v, o) => typeof v === "string" && withinRegexLimit(v) && compileRegex(o).test(v),
  gt: compare((a, b) => a > b),
  gte: compare((a, b) => a >= b),
  lt: compare((a, b) => a < b),
  lte: compare((a, b) => a <= b),
  semver_eq: semver((c) => c === 0),
  semver_gt: semver((c) => c > 0),
  semver_gte: semver((c) => c >= 0),
  semver_lt: semver((c) => c < 0),
  semver_lte: semver((c) => c <= 0),
  before: instant((a, b) => a < b),
  after: instant((a, b) => a >= b),
};
export const TRUE_WHEN_MISSING = new Set(["neq", "not_in"]);

/** One operator on one (possibly missing) attribute value: the reference the compiled closures follow. */
export function apply(op: string, value: unknown, operand: unknown): boolean {
  if (op === "exists") return (value != null) === truthy(operand);
  if (value == null) return TRUE_WHEN_MISSING.has(op);
  return OPERATORS[op](value, operand);
}
