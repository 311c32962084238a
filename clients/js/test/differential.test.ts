/**
 * The client against a frozen copy of the evaluator it replaced (test/reference/, never
 * shipped): generated bundles and contexts, every operator, targets, prerequisites, rollouts,
 * experiments with layers, traffic, audience and consent, hostile values, broken bundles.
 * Every public answer must be identical: details, variant, value, enabled, assign, arm,
 * exposure records, consent counts, config, refusals and their messages.
 */
import { describe, expect, it } from "vitest";
import { Client } from "../src/full.js";
import { Client as ReferenceClient } from "./reference/client.js";
import { bucket } from "./reference/hashing.js";
import { readVectors } from "./vectors.js";

let seed = 1;
const rand = (n: number): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n;
};
const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)];
const chance = (p: number): boolean => rand(1000) < p * 1000;

const ATTRS = ["country", "plan", "email", "age", "version", "signup", "user_id", "org.id", "org", "tags", "constructor", "a.b", "score"];
const UNITS = ["user_id", "org_id", "device", "toString"];
const COUNTRIES = ["DE", "FR", "US", "", "de", "ÄÖ"];

function isoDate(): string {
  const y = pick(["2024", "1999", "0001", "9999", "2020", "0000", "20x4"]);
  const sep = pick(["-", "", "-"]);
  const date = chance(0.2) ? `${y}${sep}W${pick(["01", "52", "53", "00", "54", "1"])}${chance(0.5) ? sep + pick(["1", "7", "0", "8"]) : ""}` : `${y}${sep}${pick(["01", "02", "12", "13", "00", "1"])}${sep}${pick(["01", "28", "29", "30", "31", "00", "32"])}`;
  if (chance(0.3)) return date;
  const t = pick(["T", " ", "t", "x", "\u{1F600}"]);
  const clock = pick(["12", "23:59", "2359", "00:00:00", "235959", "12:30:15.5", "12:30:15,123456", "12:30:15.1234567", "24:00", "12:60", "1:2", "12:30:1", "12:3015"]);
  const tz = pick(["", "Z", "z", "+01:00", "-05:30", "+0530", "+01:00:30", "-23:59:59.999999", "+24:00", "+1", "Z+00:00"]);
  return date + t + clock + tz;
}

function semver(): string {
  const core = `${pick(["0", "1", "10", "01", "2", "99999999999999999999"])}.${pick(["0", "2", "x"])}.${pick(["0", "3", "11"])}`;
  return `${pick(["", "", "v", " ", "\u00a0", "\ufeff"])}${core}${chance(0.4) ? "-" + pick(["alpha", "alpha.1", "1", "beta.2", "0.a", "rc.10", "rc.9", ""]) : ""}${chance(0.2) ? "+build.5" : ""}${pick(["", "", "\n", "\x1c", " "])}`;
}

function scalar(): unknown {
  return pick([() => pick(COUNTRIES), () => rand(100) - 10, () => rand(3) / 2, () => chance(0.5), () => null, () => pick(["pro", "free", "team"]), () => `${pick(["a", "b", "éü", "\u{1d4b0}"])}@${pick(["example.com", "corp.example.com", "x.org"])}`, semver, isoDate])();
}

function value(depth = 0): unknown {
  if (depth < 2 && chance(0.15)) return Array.from({ length: rand(4) }, () => value(depth + 1));
  if (depth < 2 && chance(0.08)) return Object.fromEntries(Array.from({ length: rand(3) }, () => [pick(["id", "x", "DE"]), value(depth + 1)]));
  return scalar();
}

const OPERANDS: Record<string, () => unknown> = {
  eq: value,
  neq: value,
  in: () => Array.from({ length: 1 + rand(4) }, () => (chance(0.7) ? pick(COUNTRIES) : scalar())),
  not_in: () => OPERANDS.in(),
  contains: () => (chance(0.7) ? pick(["a", "E", "pro", ""]) : scalar()),
  starts_with: () => pick(["a", "b", "D", ""]),
  ends_with: () => pick(["@example.com", ".com", "E", ""]),
  matches: () => pick(["^[a-z]+@", "\\d", "(?P<x>a)b", "^$", "\\w+$"]),
  gt: () => rand(100),
  gte: () => rand(100) / 3,
  lt: () => rand(100),
  lte: () => rand(50),
  semver_eq: semver,
  semver_gt: semver,
  semver_gte: semver,
  semver_lt: semver,
  semver_lte: semver,
  before: () => (chance(0.8) ? isoDate() : rand(2e9)),
  after: () => (chance(0.8) ? isoDate() : rand(2e9)),
  exists: () => chance(0.5),
};
const OPS = Object.keys(OPERANDS);

function leaf(op = pick(OPS)): any {
  const node: any = { attr: pick(ATTRS), op, value: OPERANDS[op]() };
  if (op === "matches") {
    const source = node.value.replace("(?P<", "(?<");
    node.ecmascript = chance(0.1) ? null : chance(0.05) ? ["(", "u"] : [source, "u"];
  }
  if (op === "eq" && chance(0.02)) node.op = "nope";
  return node;
}

function condition(segments: string[], depth = 0): any {
  const r = rand(10);
  if (depth > 2 || r < 5) return leaf();
  if (r === 5 && segments.length) return { segment: pick(segments) };
  if (r === 6) return { not: condition(segments, depth + 1) };
  if (r === 7 && chance(0.05)) return { weird: [] };
  return { [chance(0.5) ? "all" : "any"]: Array.from({ length: 1 + rand(3) }, () => condition(segments, depth + 1)) };
}

function arms(names: string[]): { end: number; variant: string }[] {
  const cuts = [...new Set(Array.from({ length: names.length - 1 }, () => rand(10_001)))].sort((a, b) => a - b);
  const ends = [...cuts, chance(0.03) ? 9_999 : 10_000];
  return ends.map((end, i) => ({ end, variant: names[i] }));
}

function serve(variants: string[], unit: string): any {
  if (chance(0.5)) return { variant: pick(variants) };
  return chance(0.3) ? { rollout: arms(variants), by: pick(UNITS) } : { rollout: arms(variants) };
}

function bundle(): any {
  const segmentKeys = ["beta", "eu", "staff"].slice(0, rand(4));
  const segments: any = {};
  segmentKeys.forEach((k, i) => (segments[k] = { when: condition(chance(0.05) ? segmentKeys : segmentKeys.slice(0, i)) }));
  const flagKeys = Array.from({ length: 3 + rand(5) }, (_, i) => `flag-${i}`);
  const experiments: any = {};
  const flags: any = {};
  for (let i = 0; i < 1 + rand(3); i++) {
    const flag = pick(flagKeys);
    if (Object.values(experiments).some((e: any) => e.flag === flag)) continue;
    const layered = chance(0.4);
    const layer = pick(["checkout", "home"]);
    // Range ends on the buckets of generated unit ids, so units land on both sides of each edge.
    const edge = (): number => (chance(0.6) ? bucket(`layer:${layer}`, `u-${rand(50)}`) : rand(10_001));
    const [start, end] = [edge(), edge()].sort((a, b) => a - b);
    experiments[`exp-${i}`] = {
      arms: arms(["a", "b", "c"].slice(0, 2 + rand(2))),
      consent_required: chance(0.5),
      ...(chance(0.3) ? { consent_attribute: pick(["consent", "privacy.ab", "consent.experiments"]) } : {}),
      control: "a",
      flag,
      ...(layered ? { layer, layer_range: [start, end] } : { traffic: pick([0, 1, 3000, 9_999, 10_000]) }),
      salt: `exp-${i}`,
      status: pick(["running", "running", "paused", "draft"]),
      unit: pick(UNITS),
      ...(chance(0.4) ? { audience: condition(segmentKeys) } : {}),
      ...(chance(0.6) ? { dimensions: pick([["country", "plan"], ["org"], "country", []]) } : {}),
    };
  }
  flagKeys.forEach((key, i) => {
    const names = ["on", "off", "mid"].slice(0, 2 + rand(2));
    const unit = pick(UNITS);
    const experiment = Object.entries(experiments).find(([, e]: any) => e.flag === key)?.[0];
    flags[key] = {
      default: serve(names, unit),
      enabled: chance(0.9),
      ...(chance(0.3) ? { off_variant: pick(names) } : {}),
      ...(experiment ? { experiment } : {}),
      prerequisites: i && chance(0.3) ? [{ flag: flagKeys[rand(chance(0.03) ? flagKeys.length : i)], variants: [pick(names), pick(names)] }] : [],
      rules: Array.from({ length: rand(4) }, () => ({ when: condition(segmentKeys), serve: serve(names, unit) })),
      salt: chance(0.02) ? 7 : key,
      targets: chance(0.3) ? { "u-1": pick(names), "17": pick(names), é: pick(names) } : {},
      unit,
      variants: Object.fromEntries(names.map((n) => [n, value()])),
    };
  });
  if (chance(0.03)) flags[pick(flagKeys)].prerequisites = [{ flag: "missing", variants: ["on"] }];
  return {
    config: { api: { timeout_ms: rand(9000), retries: chance(0.5) ? null : 3 }, "dotted.key": 1, theme: "dark" },
    default_unit: "user_id",
    environment: chance(0.9) ? "prod" : null,
    experiments,
    flags,
    format: chance(0.02) ? "other" : "flagstone-bundle",
    hash: chance(0.9) ? `sha256:${rand(1e9)}` : null,
    project: "generated",
    segments,
    source: {},
    version: chance(0.02) ? 2 : 1,
  };
}

function unitId(): unknown {
  return pick([() => `u-${rand(50)}`, () => "u-1", () => rand(1000), () => 17, () => 2 ** 53, () => 1.5, () => true, () => null, () => "", () => "é", () => "\u{1d4b0}\u{1F600}x", () => "a\ud800", () => "x".repeat(30 + rand(300)), () => ["u"]])();
}

function context(): Record<string, unknown> {
  const ctx: Record<string, unknown> = {};
  for (const attr of ATTRS) if (chance(0.7)) ctx[attr] = attr === "org" ? { id: value(), name: "x" } : attr === "tags" ? [pick(COUNTRIES), "pro"] : value();
  for (const unit of UNITS) if (chance(0.8)) ctx[unit] = unitId();
  const consent = pick([true, false, { experiments: true }, { experiments: "yes" }, { ab: true }, undefined]);
  if (consent !== undefined) ctx.consent = consent;
  if (chance(0.2)) ctx.privacy = { ab: chance(0.5) };
  if (chance(0.02))
    Object.defineProperty(ctx, pick(["country", "user_id", "plan"]), {
      enumerable: true,
      get() {
        throw new Error("hostile getter");
      },
    });
  return ctx;
}

interface Recorded {
  exposures: unknown[];
  counts: unknown[];
  errors: string[];
}

function make(Impl: any, raw: unknown): [any, Recorded] {
  const rec: Recorded = { exposures: [], counts: [], errors: [] };
  const client = new Impl({
    bundle: raw,
    onExposure: (e: any) => rec.exposures.push({ ...e, ts: 0 }),
    onConsentNotGiven: (c: any[]) => rec.counts.push(c.map((x) => ({ ...x, from: 0, to: 0 }))),
    onError: (e: Error) => rec.errors.push(`${e.name}: ${e.message}`),
  });
  return [client, rec];
}

// The reference threw into the app on a few hostile contexts (a getter that throws, read for
// an exposure's dimensions); the client must not, so a throw is recorded, never propagated.
const THREW = "threw into the app";
function answers(client: any, raw: any, contexts: Record<string, unknown>[]): unknown[] {
  const out: unknown[] = [client.lastError, client.hash, client.environment, client.bundle === raw];
  const safe = (f: () => unknown): unknown => {
    try {
      return f();
    } catch {
      return THREW;
    }
  };
  const shape = client.bundle ?? raw;
  const flags = [...Object.keys(shape?.flags ?? {}), "missing-flag"];
  const experiments = [...Object.keys(shape?.experiments ?? {}), "missing-exp"];
  for (const ctx of contexts) {
    for (const flag of flags) {
      out.push(
        safe(() => client.details(flag, ctx, "fb")),
        safe(() => client.resolve(flag, ctx)),
        safe(() => client.variant(flag, ctx)),
        safe(() => client.value(flag, ctx, 0)),
        safe(() => client.enabled(flag, ctx)),
        safe(() => client.enabled(flag, ctx, true)),
      );
    }
    for (const experiment of experiments) {
      const arm = safe(() => client.arm(experiment, ctx));
      out.push(arm, safe(() => client.assign(experiment, ctx)));
      const record: any = safe(() => client.exposure(experiment, arm ?? "a", ctx));
      out.push(record && record !== THREW ? { ...record, ts: 0 } : record);
    }
  }
  for (const key of ["api.timeout_ms", "api.retries", "api", "dotted.key", "theme.x", "missing", "constructor"]) out.push(client.config(key), client.config(key, "d"));
  client.flush();
  return out;
}

/** Asserts every answer identical; returns how many calls threw in the reference (and not here). */
function same(raw: unknown, contexts: Record<string, unknown>[]): number {
  const [ours, ourRec] = make(Client, raw);
  const [ref, refRec] = make(ReferenceClient, raw);
  const got = answers(ours, raw, contexts);
  const want = answers(ref, raw, contexts);
  ours.close();
  ref.close();
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (got[i] === THREW) expect([i, got[i]]).toEqual([i, "an answer"]);
    if (want[i] !== THREW && JSON.stringify(got[i]) !== JSON.stringify(want[i])) expect([i, got[i]]).toEqual([i, want[i]]);
  }
  expect(ourRec).toEqual(refRec);
  return want.filter((w) => w === THREW).length;
}

describe("the client against the frozen reference evaluator", () => {
  it("generated bundles and contexts: every public answer identical", () => {
    seed = 20261203;
    let refused = 0;
    let threw = 0;
    for (let b = 0; b < 200; b++) {
      const raw = bundle();
      const contexts = Array.from({ length: 25 }, context);
      contexts.push({}, { user_id: "u-1" }, null as any, "text" as any);
      threw += same(raw, contexts);
      if (new ReferenceClient({ bundle: raw, onError: () => {} }).lastError) refused++;
    }
    // The generator must reach both sides: usable bundles and refused ones, and the hostile contexts.
    expect(refused).toBeGreaterThan(10);
    expect(refused).toBeLessThan(150);
    expect(threw).toBeGreaterThan(0);
  });

  it("dates and versions: the date reader and semver precedence over generated strings", () => {
    seed = 7;
    for (let b = 0; b < 25; b++) {
      const rules = Array.from({ length: 8 }, (_, i) => ({ when: leaf(["before", "after", "semver_gt", "semver_eq", "semver_lte", "gte"][i % 6]), serve: { variant: `r${i}` } }));
      for (const r of rules) r.when.attr = r.when.op.startsWith("semver") ? "version" : "signup";
      const raw = { format: "flagstone-bundle", version: 1, flags: { f: { default: { variant: "d" }, enabled: true, prerequisites: [], rules, salt: "f", targets: {}, unit: "user_id", variants: { d: 0, r0: 0, r1: 1, r2: 2, r3: 3, r4: 4, r5: 5, r6: 6, r7: 7 } } } };
      const contexts = Array.from({ length: 300 }, () => ({ signup: chance(0.9) ? isoDate() : rand(2e9), version: semver() }));
      same(raw, contexts);
    }
  });

  it("the conformance bundle, its contexts and JSON text", () => {
    const vectors = readVectors("vectors.json");
    const contexts = vectors.flags.slice(0, 400).map((c: any) => c.context);
    same(vectors.bundle, contexts);
    same(JSON.stringify(vectors.bundle), contexts.slice(0, 20));
    same('{"format": "flagstone-bundle", "ver', contexts.slice(0, 2));
  });
});
