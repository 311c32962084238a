/**
 * The `before` and `after` operators: instants read as Python 3.11's
 * `datetime.fromisoformat` reads them (after replacing "Z" by "+00:00"; naive means UTC),
 * or epoch seconds. A part of its own: `import "@flagstone/client/dates"` (or
 * `@flagstone/client/full`) adds them to the core, and `Client.load` or a URL add them when
 * a bundle uses them. No module of the core is imported here, so the core stays one chunk.
 */
import type { Predicate } from "../operators.js";

const DIGITS = /^\d+$/;
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

// Both sides read by `key`; false when either is not a version (or an instant).
const ordered =
  <T>(key: (v: unknown) => T | null, pred: (a: T, b: T) => boolean): Predicate =>
  (v, o) => {
    const a = key(v);
    const b = key(o);
    return a !== null && b !== null && pred(a, b);
  };

export const operators: Record<string, Predicate> = {
  before: ordered(toInstant, (a, b) => a < b),
  after: ordered(toInstant, (a, b) => a >= b),
};
