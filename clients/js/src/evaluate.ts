/**
 * Compile a bundle once into closures; evaluate flags and experiments without parsing.
 * Module for module the Python runtime's evaluate.py: the same order (kill switch,
 * prerequisites, targets, experiment, rules, default), the same reasons, the same buckets.
 * The hot path allocates nothing: `evaluate` returns the variant and leaves the rest of
 * the outcome in `outcome`, which `resolve` copies into a Resolution when asked.
 */
import { BundleError } from "./errors.js";
import { BUCKETS, bucketer } from "./hashing.js";
import {
  type Context,
  type Json,
  OPERATORS,
  TRUE_WHEN_MISSING,
  apply,
  compileRegex,
  getter,
  lookup,
  truthy,
  withinRegexLimit,
} from "./operators.js";

export type Reason =
  | "DISABLED"
  | "PREREQUISITE_FAILED"
  | "TARGET_MATCH"
  | "RULE_MATCH"
  | "SPLIT"
  | "DEFAULT"
  | "FLAG_NOT_FOUND"
  | "ERROR";
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
export const outcome = {
  reason: "DEFAULT" as Reason,
  rule: null as number | null,
  bucket: null as number | null,
  experiment: null as string | null,
  message: null as string | null,
};

function done(reason: Reason, rule: number | null = null, bucket: number | null = null, experiment: string | null = null, message: string | null = null): void {
  outcome.reason = reason;
  outcome.rule = rule;
  outcome.bucket = bucket;
  outcome.experiment = experiment;
  outcome.message = message;
}

/** A unit id as hashed: strings as they are, integers in decimal, nothing else. */
export const unitString = (v: unknown): string | null =>
  typeof v === "string" ? v : typeof v === "number" && Number.isSafeInteger(v) ? String(v) : null;

const repr = (s: string): string => `'${s}'`;

// --- conditions ------------------------------------------------------------------------------

function compileCondition(node: any, segments: Map<string, Matcher>): Matcher {
  if ("attr" in node) return compileOperator(node.attr, node.op, node.value);
  if ("all" in node) {
    const ms: Matcher[] = node.all.map((n: any) => compileCondition(n, segments));
    if (ms.length === 1) return ms[0];
    if (ms.length === 2) {
      const [a, b] = ms;
      return (ctx) => a(ctx) && b(ctx);
    }
    return (ctx) => ms.every((m) => m(ctx));
  }
  if ("any" in node) {
    const ms: Matcher[] = node.any.map((n: any) => compileCondition(n, segments));
    return (ctx) => ms.some((m) => m(ctx));
  }
  if ("not" in node) {
    const inner = compileCondition(node.not, segments);
    return (ctx) => !inner(ctx);
  }
  if ("segment" in node) {
    const m = segments.get(node.segment);
    if (!m) throw new BundleError(`unknown segment ${repr(node.segment)}`);
    return m;
  }
  throw new BundleError(`unknown condition node ${JSON.stringify(Object.keys(node).sort())}`);
}

function compileOperator(attr: string, op: string, operand: any): Matcher {
  if (!(op in OPERATORS) && op !== "exists") throw new BundleError(`unknown operator ${repr(op)}`);
  if (attr.includes(".")) return (ctx) => apply(op, lookup(ctx, attr), operand);
  const get = getter(attr);
  // Specialised closures for the common cases; each agrees with `apply` (held by the tests).
  if (op === "eq" && typeof operand === "string") return (ctx) => get(ctx) === operand;
  if ((op === "in" || op === "not_in") && Array.isArray(operand) && operand.every((x) => typeof x === "string")) {
    const strings = new Set(operand);
    return op === "in"
      ? (ctx) => {
          const v = get(ctx);
          return typeof v === "string" && strings.has(v);
        }
      : (ctx) => {
          const v = get(ctx);
          return typeof v !== "string" || !strings.has(v);
        };
  }
  if ((op === "ends_with" || op === "starts_with") && typeof operand === "string") {
    return op === "ends_with"
      ? (ctx) => {
          const v = get(ctx);
          return typeof v === "string" && v.endsWith(operand);
        }
      : (ctx) => {
          const v = get(ctx);
          return typeof v === "string" && v.startsWith(operand);
        };
  }
  if (op === "matches") {
    let re: RegExp | Error;
    try {
      re = compileRegex(operand);
    } catch (e) {
      re = e as Error; // Python re syntax JavaScript cannot express: this condition answers ERROR
    }
    return (ctx) => {
      const v = get(ctx);
      if (typeof v !== "string" || !withinRegexLimit(v)) return false;
      if (re instanceof Error) throw re;
      return re.test(v);
    };
  }
  if (op === "exists") {
    const want = truthy(operand);
    return (ctx) => (get(ctx) != null) === want;
  }
  const check = OPERATORS[op];
  const whenMissing = TRUE_WHEN_MISSING.has(op);
  return (ctx) => {
    const v = get(ctx);
    return v == null ? whenMissing : check(v, operand);
  };
}

function segmentRefs(node: any): string[] {
  if ("segment" in node) return [node.segment];
  if ("not" in node) return segmentRefs(node.not);
  for (const c of ["all", "any"]) if (c in node) return node[c].flatMap(segmentRefs);
  return [];
}

function compileSegments(raw: Record<string, any>): Map<string, Matcher> {
  const compiled = new Map<string, Matcher>();
  const visiting = new Set<string>();
  const build = (key: string): Matcher => {
    const done = compiled.get(key);
    if (done) return done;
    if (visiting.has(key)) throw new BundleError(`segment cycle through ${repr(key)}`);
    visiting.add(key);
    const node = raw[key].when;
    for (const ref of segmentRefs(node)) {
      if (!Object.prototype.hasOwnProperty.call(raw, ref)) throw new BundleError(`segment ${repr(key)} refers to unknown segment ${repr(ref)}`);
      build(ref);
    }
    const m = compileCondition(node, compiled);
    compiled.set(key, m);
    visiting.delete(key);
    return m;
  };
  for (const key of Object.keys(raw)) build(key);
  return compiled;
}

// --- serving ---------------------------------------------------------------------------------

/** The index of the first end above `b` (Python's bisect_right); past the end throws, as IndexError does. */
function pick(ends: number[], names: string[], b: number): string {
  let i = 0;
  while (i < ends.length && ends[i] <= b) i++;
  if (i === names.length) throw new RangeError(`bucket ${b} is past the last arm`);
  return names[i];
}

function compileServe(serve: any, salt: string, unit: string): [Serve, boolean] {
  if ("variant" in serve) {
    const variant: string = serve.variant;
    return [() => ((outcome.bucket = null), variant), false];
  }
  const get = getter(serve.by ?? unit);
  const ends: number[] = serve.rollout.map((a: any) => a.end);
  const names: string[] = serve.rollout.map((a: any) => a.variant);
  if (!ends.length || ends[ends.length - 1] !== BUCKETS)
    throw new BundleError(`rollout ends at ${ends.length ? ends[ends.length - 1] : 0}, expected ${BUCKETS}`);
  const bucketOf = bucketer(salt + "/");
  return [
    (ctx) => {
      const u = unitString(get(ctx));
      if (u === null) return null;
      const b = bucketOf(u);
      outcome.bucket = b;
      return pick(ends, names, b);
    },
    true,
  ];
}

// --- experiments -----------------------------------------------------------------------------

export interface CompiledExperiment {
  key: string;
  flag: string;
  unit: string;
  control: string;
  dimensions: string[];
  /** The unit's arm, or null (not running, no unit, no consent, outside audience, layer or traffic). */
  assign(ctx: Context): string | null;
}

/**
 * Consent is given when the value at the consent path (`privacy.consent_attribute`, default
 * `consent.experiments`), or at a prefix of it, is exactly true: `consent: true` grants every
 * purpose. Nested objects only (not arrays, not a literal dotted key), as in the Python runtime.
 */
export function hasConsent(ctx: Context, path: string[] = ["consent", "experiments"]): boolean {
  let node: unknown = ctx;
  for (const part of path) {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return false;
    node = lookupOwn(node, part);
    if (node === true) return true;
  }
  return false;
}
const lookupOwn = (o: object, k: string): unknown => (Object.prototype.hasOwnProperty.call(o, k) ? (o as any)[k] : undefined);

function compileExperiment(key: string, raw: any, segments: Map<string, Matcher>): CompiledExperiment {
  const status: string = raw.status;
  const unit: string = raw.unit;
  const get = getter(unit);
  const traffic = Math.trunc(raw.traffic);
  const armBucket = bucketer(`experiment:${raw.salt}/`);
  const trafficBucket = bucketer(`experiment:${raw.salt}:traffic/`);
  const ends: number[] = raw.arms.map((a: any) => a.end);
  const names: string[] = raw.arms.map((a: any) => a.variant);
  const consentRequired = !!raw.consent_required;
  const consentPath: string[] = (raw.consent_attribute ?? "consent.experiments").split(".");
  const audience = "audience" in raw ? compileCondition(raw.audience, segments) : null;
  const layer: string | undefined = raw.layer;
  const layerBucket = bucketer(`layer:${layer}/`);
  const [start, end] = (raw.layer_range ?? [0, 0]).map(Math.trunc);
  return {
    key,
    flag: raw.flag,
    unit,
    control: raw.control,
    dimensions: Array.isArray(raw.dimensions) ? raw.dimensions : [],
    assign(ctx) {
      if (status !== "running") return null;
      const u = unitString(get(ctx));
      if (u === null) return null;
      if (consentRequired && !hasConsent(ctx, consentPath)) return null;
      if (audience !== null && !audience(ctx)) return null;
      if (layer !== undefined) {
        const b = layerBucket(u);
        if (!(start <= b && b < end)) return null;
      } else if (traffic < BUCKETS) {
        const b = trafficBucket(u);
        if (b >= traffic) return null;
      }
      return pick(ends, names, armBucket(u));
    },
  };
}

// --- flags -----------------------------------------------------------------------------------

export interface CompiledFlag {
  key: string;
  variants: Map<string, Json>;
  enabled: boolean;
  off: string | null;
  unit: string;
  unitOf: (ctx: Context) => unknown;
  prerequisites: [string, Set<string>][];
  targets: Map<string, string> | null;
  rules: [Matcher, Serve][];
  default: Serve;
  defaultIsRollout: boolean;
  experiment: CompiledExperiment | null;
}

export interface CompiledBundle {
  flags: Map<string, CompiledFlag>;
  experiments: Map<string, CompiledExperiment>;
  config: Record<string, Json>;
  hash: string | null;
  environment: string | null;
  raw: Record<string, any>;
}

const entries = (o: unknown): [string, any][] => (o && typeof o === "object" ? Object.entries(o) : []);

/** Compile a parsed bundle; throws BundleError for anything malformed. */
export function compileBundle(raw: any): CompiledBundle {
  try {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new BundleError("a bundle is a JSON object");
    if (raw.format !== "flagstone-bundle") throw new BundleError("not a flagstone bundle (format field)");
    if (raw.version !== 1) throw new BundleError(`unsupported bundle version ${JSON.stringify(raw.version)}`);
    const segments = compileSegments(raw.segments ?? {});
    const experiments = new Map(entries(raw.experiments).map(([k, e]) => [k, compileExperiment(k, e, segments)]));
    const flags = new Map(entries(raw.flags).map(([k, f]) => [k, compileFlag(k, f, segments, experiments)]));
    for (const flag of flags.values())
      for (const [prereq] of flag.prerequisites)
        if (!flags.has(prereq)) throw new BundleError(`flag ${repr(flag.key)} requires unknown flag ${repr(prereq)}`);
    return {
      flags,
      experiments,
      config: raw.config ?? {},
      hash: typeof raw.hash === "string" ? raw.hash : null,
      environment: typeof raw.environment === "string" ? raw.environment : null,
      raw,
    };
  } catch (e) {
    if (e instanceof BundleError) throw e;
    throw new BundleError(`malformed bundle: ${(e as Error).name}: ${(e as Error).message}`);
  }
}

function compileFlag(key: string, raw: any, segments: Map<string, Matcher>, experiments: Map<string, CompiledExperiment>): CompiledFlag {
  const { salt, unit } = raw;
  if (typeof salt !== "string" || typeof unit !== "string") throw new BundleError(`flag ${repr(key)} has no salt or unit`);
  const rules: [Matcher, Serve][] = raw.rules.map((rule: any) => [compileCondition(rule.when, segments), compileServe(rule.serve, salt, unit)[0]]);
  const [def, defaultIsRollout] = compileServe(raw.default, salt, unit);
  const experimentKey = raw.experiment;
  const experiment = experimentKey == null ? null : experiments.get(experimentKey);
  if (experiment === undefined) throw new BundleError(`flag ${repr(key)} serves unknown experiment ${repr(experimentKey)}`);
  const targets = entries(raw.targets);
  return {
    key,
    variants: new Map(entries(raw.variants)),
    enabled: !!raw.enabled,
    off: raw.off_variant ?? null,
    unit,
    unitOf: getter(unit),
    prerequisites: raw.prerequisites.map((p: any) => [p.flag, new Set(p.variants)]),
    targets: targets.length ? new Map(targets) : null,
    rules,
    default: def,
    defaultIsRollout,
    experiment,
  };
}

/** The hot path: the variant (or null), the rest in `outcome`. May throw on a hostile context. */
export function evaluate(bundle: CompiledBundle, flag: CompiledFlag, ctx: Context, depth = 0): string | null {
  if (!flag.enabled) return done("DISABLED"), flag.off;
  if (flag.prerequisites.length) {
    if (depth >= MAX_PREREQUISITE_DEPTH) return done("ERROR", null, null, null, "prerequisites nest too deeply"), null;
    for (const [key, allowed] of flag.prerequisites) {
      const v = evaluate(bundle, bundle.flags.get(key)!, ctx, depth + 1);
      if (v === null || !allowed.has(v)) return done("PREREQUISITE_FAILED", null, null, null, key), flag.off;
    }
  }
  if (flag.targets) {
    const u = flag.unitOf(ctx);
    if (u != null) {
      const target = flag.targets.get(unitString(u) ?? "");
      if (target !== undefined) return done("TARGET_MATCH"), target;
    }
  }
  const experiment = flag.experiment;
  if (experiment) {
    const arm = experiment.assign(ctx);
    if (arm !== null) return done("SPLIT", null, null, experiment.key), arm;
  }
  const rules = flag.rules;
  for (let i = 0; i < rules.length; i++) {
    if (rules[i][0](ctx)) {
      const v = rules[i][1](ctx);
      if (v !== null) return done("RULE_MATCH", i, outcome.bucket), v;
    }
  }
  const v = flag.default(ctx);
  if (v === null) return done("ERROR", null, null, null, `context has no usable ${repr(flag.unit)} for the default rollout`), null;
  return done(flag.defaultIsRollout ? "SPLIT" : "DEFAULT", null, outcome.bucket), v;
}

/** Evaluate to a full Resolution; never throws. */
export function resolve<V = Json>(bundle: CompiledBundle | null, key: string, ctx: Context, fallback?: V): Resolution<V> {
  const flag = bundle?.flags.get(key);
  const result = (value: any, variant: string | null, reason: Reason, message: string | null): Resolution<V> => ({
    value,
    variant,
    reason,
    ruleIndex: outcome.rule,
    bucket: outcome.bucket,
    experiment: outcome.experiment,
    message,
  });
  if (!flag) {
    done("FLAG_NOT_FOUND");
    return result(fallback, null, "FLAG_NOT_FOUND", bundle ? `no flag ${repr(key)} in the bundle` : "no bundle loaded yet");
  }
  let variant: string | null;
  try {
    variant = evaluate(bundle!, flag, ctx);
  } catch (e) {
    done("ERROR");
    return result(fallback, null, "ERROR", `${(e as Error)?.name}: ${(e as Error)?.message}`);
  }
  return result(variant === null ? fallback : flag.variants.get(variant), variant, outcome.reason, outcome.message);
}
