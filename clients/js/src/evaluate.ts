/**
 * Compile a bundle once into closures; evaluate flags and experiments without parsing.
 * Module for module the Python runtime's evaluate.py: the same order (kill switch,
 * prerequisites, targets, experiment, rules, default), the same reasons, the same buckets.
 * The hot path allocates nothing: `evaluate` returns the variant and leaves the rest of
 * the outcome in `outcome`, which `resolve` copies into a Resolution when asked.
 */
import { BundleError } from "./errors.js";
import { BUCKETS, bucketer } from "./hashing.js";
import { type Context, type Json, OPERATORS, get, getter, hasOwn, lookup, truthy } from "./operators.js";

export type Reason = "DISABLED" | "PREREQUISITE_FAILED" | "TARGET_MATCH" | "RULE_MATCH" | "SPLIT" | "DEFAULT" | "FLAG_NOT_FOUND" | "ERROR";
export const MAX_PREREQUISITE_DEPTH = 32;

export interface Resolution<V = Json, N extends string = string> {
  value: V;
  variant: N | null;
  reason: Reason;
  ruleIndex: number | null;
  bucket: number | null;
  experiment: string | null;
  message: string | null;
}

export { BundleError };

type Matcher = (ctx: Context) => boolean;
// A serve returns the variant, or null when the unit cannot be bucketed (bucket in `outcome`).
type Serve = (ctx: Context) => string | null;

/** The rest of the last evaluation's outcome (single-threaded, so one shared record). */
export const outcome: Omit<Resolution, "value" | "variant"> = { reason: "DEFAULT", ruleIndex: null, bucket: null, experiment: null, message: null };

function done(reason: Reason, ruleIndex: number | null = null, bucket: number | null = null, experiment: string | null = null, message: string | null = null): void {
  Object.assign(outcome, { reason, ruleIndex, bucket, experiment, message });
}

/** A unit id as hashed: strings as they are, integers in decimal, nothing else. */
export const unitString = (v: unknown): string | null => (typeof v === "string" ? v : Number.isSafeInteger(v) ? String(v) : null);

const fail = (what: string): never => {
  throw new BundleError(what);
};

// --- conditions ------------------------------------------------------------------------------

function compileCondition(node: any, segments: Map<string, Matcher>): Matcher {
  if ("attr" in node) return compileLeaf(node);
  if ("segment" in node) return segments.get(node.segment) ?? fail(`unknown segment '${node.segment}'`);
  if ("not" in node) {
    const inner = compileCondition(node.not, segments);
    return (ctx) => !inner(ctx);
  }
  const all = "all" in node;
  const ms: Matcher[] = (all ? node.all : node.any ?? fail(`unknown condition node ${JSON.stringify(Object.keys(node))}`)).map((n: any) =>
    compileCondition(n, segments),
  );
  if (ms.length === 1) return ms[0];
  const [a, b] = ms;
  if (all && ms.length === 2) return (ctx) => a(ctx) && b(ctx);
  return all ? (ctx) => ms.every((m) => m(ctx)) : (ctx) => ms.some((m) => m(ctx));
}

function compileLeaf({ attr, op, value, ecmascript }: any): Matcher {
  const read = attr.includes(".") ? (ctx: Context) => lookup(ctx, attr) : getter(attr);
  if (op === "exists") {
    const want = truthy(value);
    return (ctx) => (read(ctx) != null) === want;
  }
  const check = hasOwn(OPERATORS, op) ? OPERATORS[op] : fail(`unknown operator '${op}'`);
  if (op === "matches") {
    // flagstone build translates each pattern (src/flagstone/ecmascript.py); without one, this condition answers ERROR.
    try {
      value = new RegExp(...(ecmascript as [string, string]));
    } catch {
      value = new BundleError(`pattern ${JSON.stringify(value)} has no ECMAScript form${ecmascript === undefined ? " (rebuild the bundle with flagstone build)" : ""}`);
    }
  }
  // Specialised closures for the common cases; each agrees with OPERATORS (held by the vectors).
  let test = (v: unknown): boolean => check(v, value);
  if (typeof value === "string") {
    if (op === "eq") test = (v) => v === value;
    if (op === "ends_with") test = (v) => typeof v === "string" && v.endsWith(value);
    if (op === "starts_with") test = (v) => typeof v === "string" && v.startsWith(value);
  }
  if ((op === "in" || op === "not_in") && Array.isArray(value) && value.every((x) => typeof x === "string")) {
    const strings = new Set<unknown>(value);
    test = op === "in" ? (v) => strings.has(v) : (v) => !strings.has(v);
  }
  const whenMissing = op === "neq" || op === "not_in";
  return (ctx) => {
    const v = read(ctx);
    return v == null ? whenMissing : test(v);
  };
}

function compileSegments(raw: Record<string, any>): Map<string, Matcher> {
  const compiled = new Map<string, Matcher>();
  const visiting = new Set<string>();
  const refs = (node: any): string[] =>
    "segment" in node ? [node.segment] : "not" in node ? refs(node.not) : (node.all ?? node.any ?? []).flatMap(refs);
  const build = (key: string): void => {
    if (compiled.has(key)) return;
    if (visiting.has(key)) fail(`segment cycle through '${key}'`);
    visiting.add(key);
    const node = raw[key].when;
    for (const ref of refs(node)) hasOwn(raw, ref) ? build(ref) : fail(`segment '${key}' refers to unknown segment '${ref}'`);
    compiled.set(key, compileCondition(node, compiled));
  };
  for (const key in raw) build(key);
  return compiled;
}

// --- serving ---------------------------------------------------------------------------------

type Arms = [number[], string[]];
const arms = (list: any[]): Arms => [list.map((a) => a.end), list.map((a) => a.variant)];

/** The index of the first end above `b` (Python's bisect_right); past the end throws, as IndexError does. */
function pick([ends, names]: Arms, b: number): string {
  let i = 0;
  while (i < ends.length && ends[i] <= b) i++;
  return names[i] ?? fail(`bucket ${b} is past the last arm`);
}

function compileServe(serve: any, salt: string, unit: string): Serve {
  if ("variant" in serve) return () => ((outcome.bucket = null), serve.variant);
  const get = getter(serve.by ?? unit);
  const split = arms(serve.rollout);
  const last = split[0].at(-1) ?? 0;
  if (last !== BUCKETS) fail(`rollout ends at ${last}, expected ${BUCKETS}`);
  const bucketOf = bucketer(salt + "/");
  return (ctx) => {
    const u = unitString(get(ctx));
    return u === null ? null : pick(split, (outcome.bucket = bucketOf(u)));
  };
}

// --- experiments -----------------------------------------------------------------------------

/** The unit's arm, or null (not running, no unit, no consent, outside audience, layer or traffic). */
export type Assign = (ctx: Context) => string | null;

/**
 * Consent is given when the value at the consent path (`privacy.consent_attribute`, default
 * `consent.experiments`), or at a prefix of it, is exactly true: `consent: true` grants every
 * purpose. Nested objects only (not arrays, not a literal dotted key), as in the Python runtime.
 */
export function hasConsent(ctx: Context, path: string[] = ["consent", "experiments"]): boolean {
  let node: unknown = ctx;
  for (const part of path) if ((node = get(node, part)) === true) return true;
  return false;
}

function compileExperiment(raw: any, segments: Map<string, Matcher>): Assign {
  const { unit, layer, salt } = raw;
  const get = getter(unit);
  const consentPath: string[] = (raw.consent_attribute ?? "consent.experiments").split(".");
  const traffic = Math.trunc(raw.traffic);
  const split = arms(raw.arms);
  const armBucket = bucketer(`experiment:${salt}/`);
  const trafficBucket = bucketer(`experiment:${salt}:traffic/`);
  const layerBucket = bucketer(`layer:${layer}/`);
  const audience = raw.audience && compileCondition(raw.audience, segments);
  const [start, end] = (raw.layer_range ?? [0, 0]).map(Math.trunc);
  return (ctx) => {
    const u = raw.status === "running" ? unitString(get(ctx)) : null;
    if (u === null || (raw.consent_required && !hasConsent(ctx, consentPath)) || (audience && !audience(ctx))) return null;
    if (layer !== undefined) {
      const b = layerBucket(u);
      if (b < start || b >= end) return null;
    } else if (traffic < BUCKETS && trafficBucket(u) >= traffic) return null;
    return pick(split, armBucket(u));
  };
}

// --- flags -----------------------------------------------------------------------------------

/** A flag compiled to one closure: the variant (or null), the rest in `outcome`. May throw on a hostile context. */
export interface CompiledFlag {
  variants: Map<string, Json>;
  evaluate: (ctx: Context, depth?: number) => string | null;
}

export interface CompiledBundle {
  flags: Map<string, CompiledFlag>;
  experiments: Map<string, Assign>;
  config: Record<string, Json>;
  hash: string | null;
  environment: string | null;
  raw: Record<string, any>;
}

const entries = (o: unknown): [string, any][] => (o && typeof o === "object" ? Object.entries(o) : []);
const text = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** Compile a parsed bundle; throws BundleError for anything malformed. */
export function compileBundle(raw: any): CompiledBundle {
  try {
    if (typeof raw !== "object" || !raw || Array.isArray(raw)) fail("a bundle is a JSON object");
    if (raw.format !== "flagstone-bundle") fail("not a flagstone bundle (format field)");
    if (raw.version !== 1) fail(`unsupported bundle version ${JSON.stringify(raw.version)}`);
    const segments = compileSegments(raw.segments ?? {});
    const experiments = new Map(entries(raw.experiments).map(([k, e]) => [k, compileExperiment(e, segments)]));
    const flags = new Map<string, CompiledFlag>();
    for (const [key, flag] of entries(raw.flags)) flags.set(key, compileFlag(key, flag, segments, experiments, flags));
    for (const [key, flag] of entries(raw.flags))
      for (const p of flag.prerequisites) flags.has(p.flag) || fail(`flag '${key}' requires unknown flag '${p.flag}'`);
    return { flags, experiments, config: raw.config ?? {}, hash: text(raw.hash), environment: text(raw.environment), raw };
  } catch (e: any) {
    throw e instanceof BundleError ? e : new BundleError(`malformed bundle: ${e.name}: ${e.message}`);
  }
}

// The same order as Python's: kill switch, prerequisites, targets, experiment, rules, default.
function compileFlag(key: string, raw: any, segments: Map<string, Matcher>, experiments: Map<string, Assign>, flags: Map<string, CompiledFlag>): CompiledFlag {
  const { salt, unit, experiment, enabled, off_variant: off = null } = raw;
  if (typeof salt !== "string" || typeof unit !== "string") fail(`flag '${key}' has no salt or unit`);
  const unitOf = getter(unit);
  const prerequisites: [string, Set<string>][] = raw.prerequisites.map((p: any) => [p.flag, new Set(p.variants)]);
  const targets = new Map(entries(raw.targets));
  const rules: [Matcher, Serve][] = raw.rules.map((rule: any) => [compileCondition(rule.when, segments), compileServe(rule.serve, salt, unit)]);
  const fallback = compileServe(raw.default, salt, unit);
  const split = "rollout" in raw.default;
  const assign = experiment == null ? null : experiments.get(experiment) ?? fail(`flag '${key}' serves unknown experiment '${experiment}'`);
  const evaluate = (ctx: Context, depth = 0): string | null => {
    if (!enabled) return done("DISABLED"), off;
    if (prerequisites.length && depth >= MAX_PREREQUISITE_DEPTH) return done("ERROR", null, null, null, "prerequisites nest too deeply"), null;
    for (const [key, allowed] of prerequisites) {
      const v = flags.get(key)!.evaluate(ctx, depth + 1);
      if (v === null || !allowed.has(v)) return done("PREREQUISITE_FAILED", null, null, null, key), off;
    }
    if (targets.size) {
      const u = unitOf(ctx);
      const target = u == null ? undefined : targets.get(unitString(u) ?? "");
      if (target !== undefined) return done("TARGET_MATCH"), target;
    }
    const arm = assign && assign(ctx);
    if (arm != null) return done("SPLIT", null, null, experiment), arm;
    for (let i = 0; i < rules.length; i++) {
      if (rules[i][0](ctx)) {
        const v = rules[i][1](ctx);
        if (v !== null) return done("RULE_MATCH", i, outcome.bucket), v;
      }
    }
    const v = fallback(ctx);
    if (v === null) return done("ERROR", null, null, null, `context has no usable '${unit}' for the default rollout`), null;
    return done(split ? "SPLIT" : "DEFAULT", null, outcome.bucket), v;
  };
  return { variants: new Map(entries(raw.variants)), evaluate };
}

/** Evaluate to a full Resolution; never throws. */
export function resolve<V = Json>(bundle: CompiledBundle | null, key: string, ctx: Context, fallback?: V): Resolution<V> {
  const flag = bundle?.flags.get(key);
  let variant: string | null = null;
  let value: any = fallback;
  if (!flag) done("FLAG_NOT_FOUND", null, null, null, bundle ? `no flag '${key}' in the bundle` : "no bundle loaded yet");
  else
    try {
      variant = flag.evaluate(ctx);
      if (variant !== null) value = flag.variants.get(variant);
    } catch (e: any) {
      done("ERROR", null, null, null, `${e?.name}: ${e?.message}`);
    }
  return { value, variant, ...outcome };
}
