/**
 * Compile a bundle once into closures; evaluate flags and experiments without parsing.
 * Module for module the Python runtime's evaluate.py: the same order (kill switch,
 * prerequisites, targets, experiment, rules, default), the same reasons, the same buckets.
 * The hot path allocates nothing: a flag's closure returns the variant and leaves the rest
 * of the outcome in `outcome`, which `resolve` copies into a Resolution when asked.
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

// Record the outcome; returns `variant`, so `return done(...)` ends an evaluation.
function done<T>(variant: T, reason: Reason, message: string | null = null, experiment: string | null = null, ruleIndex: number | null = null, bucket: number | null = null): T {
  outcome.reason = reason;
  outcome.ruleIndex = ruleIndex;
  outcome.bucket = bucket;
  outcome.experiment = experiment;
  outcome.message = message;
  return variant;
}

/** A unit id as hashed: strings as they are, integers in decimal, nothing else. */
export const unitString = (v: unknown): string | null => (typeof v === "string" ? v : Number.isSafeInteger(v) ? String(v) : null);

const fail = (what: string): never => {
  throw new BundleError(what);
};

// --- conditions ------------------------------------------------------------------------------

function compileCondition(node: any, segments: (key: string) => Matcher): Matcher {
  if ("attr" in node) return compileLeaf(node);
  if ("segment" in node) return segments(node.segment);
  if ("not" in node) {
    const inner = compileCondition(node.not, segments);
    return (ctx) => !inner(ctx);
  }
  const all = "all" in node;
  const ms: Matcher[] = (all ? node.all : node.any ?? fail("unknown condition node")).map((n: any) => compileCondition(n, segments));
  const [a, b] = ms;
  return ms.length === 1 ? a : all && ms.length === 2 ? (ctx) => a(ctx) && b(ctx) : all ? (ctx) => ms.every((m) => m(ctx)) : (ctx) => ms.some((m) => m(ctx));
}

function compileLeaf({ attr, op, value, ecmascript }: any): Matcher {
  const read = attr.includes(".") ? (ctx: Context) => lookup(ctx, attr) : getter(attr);
  if (op === "exists") {
    const want = truthy(value);
    return (ctx) => (read(ctx) != null) === want;
  }
  const check = hasOwn(OPERATORS, op) ? OPERATORS[op] : fail(`unknown operator ${op}`);
  if (op === "matches")
    try {
      // flagstone build writes each pattern in ECMAScript form (src/flagstone/ecmascript.py).
      value = new RegExp(...(ecmascript as [string, string]));
    } catch {
      value = new BundleError(`pattern ${value} has no ECMAScript form`); // this condition answers ERROR
    }
  const whenMissing = op === "neq" || op === "not_in";
  // The common cases as closures of their own (no second call per leaf); each agrees with OPERATORS (held by the vectors).
  if (!attr.includes(".")) {
    if (typeof value === "string") {
      if (op === "eq") return (ctx) => read(ctx) === value;
      if (op === "ends_with")
        return (ctx) => {
          const v = read(ctx);
          return typeof v === "string" && v.endsWith(value);
        };
      if (op === "starts_with")
        return (ctx) => {
          const v = read(ctx);
          return typeof v === "string" && v.startsWith(value);
        };
    }
    if ((op === "in" || op === "not_in") && Array.isArray(value) && value.every((x) => typeof x === "string")) {
      const strings = new Set<unknown>(value);
      return op === "in" ? (ctx) => strings.has(read(ctx)) : (ctx) => !strings.has(read(ctx));
    }
  }
  return (ctx) => {
    const v = read(ctx);
    return v == null ? whenMissing : check(v, value);
  };
}

// --- serving ---------------------------------------------------------------------------------

type Arms = [number[], string[]];
const arms = (list: any[]): Arms => [list.map((a) => a.end), list.map((a) => a.variant)];

/** The arm of bucket `b` among cumulative ends (Python's bisect_right); past the end throws, as IndexError does. */
function pick([ends, names]: Arms, b: number): string {
  let i = 0;
  while (i < ends.length && ends[i] <= b) i++;
  return names[i] ?? fail(`bucket ${b} is past the last arm`);
}

function compileServe(serve: any, salt: string, unit: string): Serve {
  const { variant, rollout } = serve;
  if (variant !== undefined) return () => ((outcome.bucket = null), variant);
  const get = getter(serve.by ?? unit);
  const split = arms(rollout);
  if (split[0].at(-1) !== BUCKETS) fail(`rollout does not end at ${BUCKETS}`);
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

/** Told of each unit an experiment leaves out for lacking consent (counted, never logged). */
export type OnRefusal = (experiment: string, unit: string) => void;

function compileExperiment(key: string, raw: any, segments: (key: string) => Matcher, refused: OnRefusal): Assign {
  const { unit, layer, salt, traffic, audience } = raw;
  const split = arms(raw.arms);
  const get = getter(unit);
  const consentPath: string[] = (raw.consent_attribute ?? "consent.experiments").split(".");
  const armBucket = bucketer(`experiment:${salt}/`);
  const trafficBucket = bucketer(`experiment:${salt}:traffic/`);
  const layerBucket = bucketer(`layer:${layer}/`);
  const inAudience = audience ? compileCondition(audience, segments) : () => true;
  const [start, end] = raw.layer_range ?? [0, 0];
  const running = raw.status === "running";
  const consentRequired = raw.consent_required;
  return (ctx) => {
    const u = running ? unitString(get(ctx)) : null;
    if (u === null) return null;
    if (consentRequired && !hasConsent(ctx, consentPath)) return refused(key, u), null;
    if (!inAudience(ctx)) return null;
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

const entries = (o: unknown): [string, any][] => Object.entries(o ?? {});
const text = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** Compile a parsed bundle; throws BundleError for anything malformed. */
export function compileBundle(raw: any, refused: OnRefusal = () => {}): CompiledBundle {
  try {
    if (raw?.format !== "flagstone-bundle") fail("not a flagstone bundle (format field)");
    if (raw.version !== 1) fail(`unsupported bundle version ${JSON.stringify(raw.version)}`);
    // Segments compile on first reference, each once; one that refers back to itself is a cycle.
    const segments = new Map<string, Matcher | null>();
    const segment = (key: string): Matcher => {
      const m = segments.get(key);
      if (m === null) fail(`segment cycle through ${key}`);
      if (m) return m;
      segments.set(key, null);
      const compiled = compileCondition((hasOwn(raw.segments ?? {}, key) ? raw.segments[key] : fail(`unknown segment ${key}`)).when, segment);
      segments.set(key, compiled);
      return compiled;
    };
    for (const [key] of entries(raw.segments)) segment(key);
    const experiments = new Map(entries(raw.experiments).map(([k, e]) => [k, compileExperiment(k, e, segment, refused)]));
    const flags = new Map<string, CompiledFlag>();
    // An unknown prerequisite is refused as its flag compiles (the client's order, for bundles with several faults).
    for (const [key, flag] of entries(raw.flags)) flags.set(key, compileFlag(flag, segment, experiments, flags, raw.flags));
    return { flags, experiments, config: raw.config ?? {}, hash: text(raw.hash), environment: text(raw.environment), raw };
  } catch (e: any) {
    throw e instanceof BundleError ? e : new BundleError(`malformed bundle: ${e.name}: ${e.message}`);
  }
}

// The same order as Python's: kill switch, prerequisites, targets, experiment, rules, default.
function compileFlag(raw: any, segments: (key: string) => Matcher, experiments: Map<string, Assign>, flags: Map<string, CompiledFlag>, known: object): CompiledFlag {
  const { salt, unit, experiment, enabled, off_variant: off = null } = raw;
  if (typeof salt !== "string" || typeof unit !== "string") fail("a flag without salt or unit");
  const unitOf = getter(unit);
  const prerequisites: [string, Set<string>][] = raw.prerequisites.map((p: any) => (hasOwn(known ?? {}, p.flag) || fail(`unknown prerequisite ${p.flag}`), [p.flag, new Set(p.variants)]));
  const targets = new Map(entries(raw.targets));
  const rules: [Matcher, Serve][] = raw.rules.map((rule: any) => [compileCondition(rule.when, segments), compileServe(rule.serve, salt, unit)]);
  const fallback = compileServe(raw.default, salt, unit);
  const split = raw.default.rollout ? "SPLIT" : "DEFAULT";
  const assign = experiment == null ? null : experiments.get(experiment) ?? fail(`unknown experiment ${experiment}`);
  const evaluate = (ctx: Context, depth = 0): string | null => {
    if (!enabled) return done(off, "DISABLED");
    if (prerequisites.length && depth >= MAX_PREREQUISITE_DEPTH) return done(null, "ERROR", "prerequisites nest too deeply");
    for (const [key, allowed] of prerequisites) {
      const v = flags.get(key)!.evaluate(ctx, depth + 1);
      if (v === null || !allowed.has(v)) return done(off, "PREREQUISITE_FAILED", key);
    }
    if (targets.size) {
      const u = unitOf(ctx);
      const target = u == null ? undefined : targets.get(unitString(u) ?? "");
      if (target !== undefined) return done(target, "TARGET_MATCH");
    }
    const arm = assign && assign(ctx);
    if (arm != null) return done(arm, "SPLIT", null, experiment);
    for (let i = 0; i < rules.length; i++) {
      if (rules[i][0](ctx)) {
        const v = rules[i][1](ctx);
        if (v !== null) return done(v, "RULE_MATCH", null, null, i, outcome.bucket);
      }
    }
    const v = fallback(ctx);
    return v === null ? done(null, "ERROR", `context has no usable '${unit}' for the default rollout`) : done(v, split, null, null, null, outcome.bucket);
  };
  return { variants: new Map(entries(raw.variants)), evaluate };
}

/** Evaluate to a full Resolution; never throws. */
export function resolve<V = Json>(bundle: CompiledBundle | null, key: string, ctx: Context, fallback?: V): Resolution<V> {
  const flag = bundle?.flags.get(key);
  let variant: string | null = null;
  try {
    variant = flag ? flag.evaluate(ctx) : done(null, "FLAG_NOT_FOUND", bundle ? `no flag '${key}' in the bundle` : "no bundle loaded yet");
  } catch (e: any) {
    done(null, "ERROR", `${e?.name}: ${e?.message}`);
  }
  return { value: variant === null ? fallback : (flag!.variants.get(variant) as any), variant, ...outcome };
}
