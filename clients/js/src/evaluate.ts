/**
 * Compile a bundle once into closures; evaluate flags and experiments without parsing.
 * Module for module the Python runtime's evaluate.py: the same order (kill switch,
 * prerequisites, targets, experiment, rules, default), the same reasons, the same buckets.
 * The hot path allocates nothing: a flag's closure returns the variant and leaves the rest
 * of the outcome in `outcome`, which the client copies into a Resolution when asked.
 * Experiments and prerequisites are parts (parts/experiments.ts, parts/prerequisites.ts),
 * compiled here once imported; a bundle that needs one not imported is refused, naming it.
 */
import { BundleError } from "./errors.js";
import { BUCKETS, bucketer } from "./hashing.js";
import type { Exposure } from "./client.js";
import { type Context, type Json, OPERATORS, get, getter, hasOwn, lookup, partOf } from "./operators.js";
import type { counter } from "./parts/consent.js";
import type { experiments } from "./parts/experiments.js";
import type { prerequisites } from "./parts/prerequisites.js";

export type Reason = "DISABLED" | "PREREQUISITE_FAILED" | "TARGET_MATCH" | "RULE_MATCH" | "SPLIT" | "DEFAULT" | "FLAG_NOT_FOUND" | "ERROR";

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
export function done<T>(variant: T, reason: Reason, message: string | null = null, experiment: string | null = null, ruleIndex: number | null = null, bucket: number | null = null): T {
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

// What is being compiled ("flag 'x'", "segment 'y'", "experiment 'z'"), for the refusal of a part not imported.
let where = "";
/** The refusal of a bundle that uses a part (parts/) not imported. */
const unregistered = (what: string, part: string): never =>
  fail(`${where} uses ${what}, which needs import "@flagstone/client/${part}" (Client.load and a url import it themselves)`);

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

function compileLeaf(node: any): Matcher {
  const { attr, op } = node;
  let { value } = node;
  const read = attr.includes(".") ? (ctx: Context) => lookup(ctx, attr) : getter(attr);
  if (op === "exists") {
    const want = value === true;
    return (ctx) => (read(ctx) != null) === want;
  }
  const part = partOf(op);
  const check = hasOwn(OPERATORS, op) ? OPERATORS[op] : part ? unregistered(`the operator '${op}'`, part) : fail(`unknown operator ${op}`);
  if (check.prepare) value = check.prepare(node, BundleError);
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

// --- experiments (parts/experiments.ts) ----------------------------------------------------

/** The unit's arm, or null (not running, no unit, no consent, outside audience, layer or traffic). */
export type Assign = (ctx: Context) => string | null;
/** An experiment compiled by its part: the assignment, and the exposure record of a unit in an arm. */
export type CompiledExperiment = [assign: Assign, exposure: (arm: string, ctx: Context) => Exposure];

/** Told of each unit an experiment leaves out for lacking consent (counted, never logged), with the experiment's flag and the bundle's environment. */
export type OnRefusal = (experiment: string, unit: string, flag: string, environment: string | null) => void;

/**
 * The parts that are not the core's own, once imported: experiments (parts/experiments.ts),
 * prerequisites (parts/prerequisites.ts) and the consent counts (parts/consent.ts), each by
 * its entry point or by `Client.load`.
 * The operators of dates, semver and regex go into the operator table itself.
 */
export const parts: { experiment?: ReturnType<typeof experiments>; prerequisites?: ReturnType<typeof prerequisites>; consent?: typeof counter } = {};

/**
 * What the parts use of the core, handed to them (a part imports no module of the core, so
 * the core stays one chunk and a part loaded later shares nothing with it).
 */
export type Kit = readonly [
  operators: typeof OPERATORS,
  parts: typeof parts,
  error: typeof BundleError,
  arms: typeof arms,
  pick: typeof pick,
  getter: typeof getter,
  get: typeof get,
  bucketer: typeof bucketer,
  unitString: typeof unitString,
  condition: typeof compileCondition,
  unregistered: typeof unregistered,
  done: typeof done,
];
// A tuple, not an object: its names would be bytes of the core (the labels above are types only).
export const kit: Kit = [OPERATORS, parts, BundleError, arms, pick, getter, get, bucketer, unitString, compileCondition, unregistered, done];

// --- flags -----------------------------------------------------------------------------------

/** A flag compiled to one closure: the variant (or null), the rest in `outcome`. May throw on a hostile context. */
export interface CompiledFlag {
  variants: Map<string, Json>;
  evaluate: (ctx: Context, depth?: number) => string | null;
}

export interface CompiledBundle {
  flags: Map<string, CompiledFlag>;
  experiments: Map<string, CompiledExperiment>;
  config: Record<string, Json>;
  hash: string | null;
  environment: string | null;
  raw: Record<string, any>;
}

const entries = (o: unknown): [string, any][] => Object.entries(o ?? {});
const text = (v: unknown): string | null => (typeof v === "string" ? v : null);

/**
 * Compile a parsed bundle; throws BundleError for anything malformed. `refused` is told of
 * the units left out for lacking consent; null refuses a bundle whose experiments require
 * consent (a client asked to count them without the consent part).
 */
export function compileBundle(raw: any, refused: OnRefusal | null = () => {}): CompiledBundle {
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
      const outer = where;
      where = `segment '${key}'`;
      const compiled = compileCondition(((get(raw.segments, key) as any) ?? fail(`unknown segment ${key}`)).when, segment);
      segments.set(key, compiled);
      where = outer;
      return compiled;
    };
    for (const [key] of entries(raw.segments)) segment(key);
    const experiment = parts.experiment;
    const experiments = new Map(
      entries(raw.experiments).map(([k, e]) => [k, experiment ? ((where = `experiment '${k}'`), experiment(k, e, segment, refused, text(raw.environment))) : ((where = "the bundle"), unregistered(`experiment '${k}'`, "experiments"))]),
    );
    const flags = new Map<string, CompiledFlag>();
    for (const [key, flag] of entries(raw.flags)) flags.set(key, ((where = `flag '${key}'`), compileFlag(flag, segment, experiments, flags, raw.flags)));
    return { flags, experiments, config: raw.config ?? {}, hash: text(raw.hash), environment: text(raw.environment), raw };
  } catch (e: any) {
    throw e instanceof BundleError ? e : new BundleError(`malformed bundle: ${e.name}: ${e.message}`);
  }
}

// The same order as Python's: kill switch, prerequisites, targets, experiment, rules, default.
function compileFlag(raw: any, segments: (key: string) => Matcher, experiments: Map<string, CompiledExperiment>, flags: Map<string, CompiledFlag>, known: object): CompiledFlag {
  const { salt, unit, experiment, enabled, off_variant: off = null } = raw;
  if (typeof salt !== "string" || typeof unit !== "string") fail("a flag without salt or unit");
  const unitOf = getter(unit);
  const prerequisites = raw.prerequisites.length ? (parts.prerequisites ?? unregistered("prerequisites", "prerequisites"))(raw.prerequisites, flags, off, known) : null;
  const targets = new Map(entries(raw.targets));
  const rules: [Matcher, Serve][] = raw.rules.map((rule: any) => [compileCondition(rule.when, segments), compileServe(rule.serve, salt, unit)]);
  const fallback = compileServe(raw.default, salt, unit);
  const split = raw.default.rollout ? "SPLIT" : "DEFAULT";
  const assign = experiment == null ? null : (experiments.get(experiment) ?? fail(`unknown experiment ${experiment}`))[0];
  const evaluate = (ctx: Context, depth = 0): string | null => {
    if (!enabled) return done(off, "DISABLED");
    const failed = prerequisites?.(ctx, depth);
    if (failed !== undefined) return failed;
    // A unit that is no id (null) matches no target: every target's key is a string.
    const target = targets.size ? targets.get(unitString(unitOf(ctx))!) : undefined;
    if (target !== undefined) return done(target, "TARGET_MATCH");
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
