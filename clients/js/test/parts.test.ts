/**
 * The parts with entry points of their own (dates, semver, regex, experiments,
 * prerequisites, the consent counts): the core alone refuses a bundle that uses one at load,
 * naming the flag (or segment, experiment), what it uses and the import, and never answers
 * from it; importing the entry point makes the same bundle load synchronously. Only the core
 * is imported here, and the tests run in order: the refusals first, then each entry point.
 */
import { readFileSync, readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BundleError, Client, compileBundle } from "../src/index.js";
import { readVectors } from "./vectors.js";

const flag = (when: unknown): any => ({ default: { variant: "off" }, enabled: true, prerequisites: [], rules: [{ when, serve: { variant: "on" } }], salt: "f", targets: {}, unit: "user_id", variants: { on: true, off: false } });
const bundleOf = (parts: Record<string, unknown>): any => ({ format: "flagstone-bundle", version: 1, hash: null, environment: "prod", flags: {}, segments: {}, experiments: {}, config: {}, ...parts });

const dated = bundleOf({ flags: { launch: flag({ attr: "signup", op: "after", value: "2026-10-01" }) } });
const versioned = bundleOf({ segments: { modern: { when: { attr: "app_version", op: "semver_gte", value: "3.2.0" } } }, flags: { "new-ui": flag({ segment: "modern" }) } });
const audience = bundleOf({ experiments: { trial: { arms: [{ end: 10_000, variant: "on" }], consent_required: false, flag: "launch", salt: "trial", status: "running", traffic: 10_000, unit: "user_id", audience: { attr: "v", op: "semver_lt", value: "1.0.0" } } }, flags: { launch: { ...flag({ attr: "x", op: "exists", value: true }), experiment: "trial" } } });
const matching = bundleOf({ flags: { staff: flag({ attr: "email", op: "matches", value: "@corp\\.example$", ecmascript: ["@corp\\.example$", "u"] }) } });
const depending = bundleOf({ flags: { base: flag({ attr: "x", op: "exists", value: true }), child: { ...flag({ attr: "x", op: "exists", value: true }), off_variant: "off", prerequisites: [{ flag: "base", variants: ["on"] }] } } });
const consenting = bundleOf({
  experiments: { onboarding: { arms: [{ end: 5000, variant: "on" }, { end: 10_000, variant: "off" }], consent_required: true, flag: "launch", salt: "onboarding", status: "running", traffic: 10_000, unit: "user_id" } },
  flags: { launch: { ...flag({ attr: "x", op: "exists", value: true }), experiment: "onboarding" } },
});

const load = (bundle: unknown, options: Record<string, unknown> = {}): [Client, Error[]] => {
  const errors: Error[] = [];
  return [new Client({ bundle, onError: (e) => errors.push(e), ...options }), errors];
};
const needs = (part: string): string => `, which needs import "@flagstone/client/${part}" (Client.load and a url import it themselves)`;

describe("the core without a part's entry point", () => {
  it("refuses a bundle using before/after, naming the flag, the operator and the import", async () => {
    const [client, errors] = load(dated);
    expect(await client.ready).toBe(false);
    expect(errors.map((e) => [e.name, e.message])).toEqual([["BundleError", `flag 'launch' uses the operator 'after'${needs("dates")}`]]);
    expect(client.lastError).toBe(errors[0].message);
    // never an answer from the refused bundle
    expect(client.variant("launch", { signup: "2026-11-01" }, "fallback")).toBe("fallback");
    expect(() => compileBundle(dated)).toThrow(BundleError);
  });

  it("refuses semver in a segment, matches in a flag, naming where", () => {
    expect(load(versioned)[0].lastError).toBe(`segment 'modern' uses the operator 'semver_gte'${needs("semver")}`);
    expect(load(matching)[0].lastError).toBe(`flag 'staff' uses the operator 'matches'${needs("regex")}`);
  });

  it("refuses experiments and prerequisites, naming the experiment and the flag", () => {
    const [client, errors] = load(consenting);
    expect(errors.map((e) => e.message)).toEqual([`the bundle uses experiment 'onboarding'${needs("experiments")}`]);
    expect(client.assign("onboarding", { user_id: "u-1", x: 1, consent: true })).toBeNull();
    expect(client.exposure("onboarding", "on", { user_id: "u-1" })).toBeNull();
    expect(load(depending)[0].lastError).toBe(`flag 'child' uses prerequisites${needs("prerequisites")}`);
  });

  it("an unknown operator is still an unknown operator", () => {
    expect(load(bundleOf({ flags: { f: flag({ attr: "a", op: "semver_near", value: "1.0.0" }) } }))[0].lastError).toBe("unknown operator semver_near");
  });
});

describe("each part's entry point", () => {
  const vectors = readVectors("vectors.json");

  it("@flagstone/client/experiments: experiments load; an audience still needs its operator's part, consent counting its own", async () => {
    await import("../src/experiments.js");
    expect(load(audience)[0].lastError).toBe(`experiment 'trial' uses the operator 'semver_lt'${needs("semver")}`);
    const [counting] = load(consenting, { onConsentNotGiven: () => {} });
    expect(counting.lastError).toBe(`experiment 'onboarding' uses consent: required with onConsentNotGiven (flag 'launch')${needs("consent")}`);
    const [plain, errors] = load(consenting);
    expect(errors).toEqual([]);
    expect(plain.assign("onboarding", { user_id: "u-1", x: 1 })).toBeNull(); // no consent: left out
    expect(plain.assign("onboarding", { user_id: "u-1", x: 1, consent: true })).toMatch(/^(on|off)$/);
  });

  it("@flagstone/client/dates: bundles with before/after load synchronously", async () => {
    await import("../src/dates.js");
    const [client, errors] = load(dated);
    expect(errors).toEqual([]);
    expect([client.variant("launch", { signup: "2026-11-01T00:00:00+01:00" }), client.variant("launch", { signup: "2026-09-30" })]).toEqual(["on", "off"]);
    expect(load(versioned)[0].lastError).toMatch(/needs import "@flagstone\/client\/semver"/);
  });

  it("@flagstone/client/semver, /regex and /prerequisites: each bundle loads and answers", async () => {
    await import("../src/semver.js");
    expect(load(versioned)[0].variant("new-ui", { app_version: "3.10.0" })).toBe("on");
    await import("../src/regex.js");
    const [staff] = load(matching);
    expect([staff.variant("staff", { email: "ann@corp.example" }), staff.variant("staff", { email: "ann@corp.example.org" })]).toEqual(["on", "off"]);
    await import("../src/prerequisites.js");
    const [child, errors] = load(depending);
    expect(errors).toEqual([]);
    expect(child.details("child", { x: 1 })).toMatchObject({ variant: "on", reason: "RULE_MATCH" });
    expect(child.details("child", {})).toMatchObject({ variant: "off", reason: "PREREQUISITE_FAILED", message: "base" });
  });

  it("@flagstone/client/consent: a counting client loads consent-required experiments and counts", async () => {
    await import("../src/consent.js");
    const batches: unknown[] = [];
    const [client, errors] = load(consenting, { onConsentNotGiven: (b: unknown[]) => batches.push(...b) });
    expect(errors).toEqual([]);
    client.assign("onboarding", { user_id: "u-1", x: 1 });
    client.assign("onboarding", { user_id: "u-1", x: 1 });
    client.flush();
    expect(batches).toMatchObject([{ type: "consent_not_given", experiment: "onboarding", flag: "launch", environment: "prod", units: 1 }]);
  });

  it("with every part, the conformance bundle loads and agrees with every vector", () => {
    const [client, errors] = load(vectors.bundle);
    expect(errors).toEqual([]);
    expect(client.variant("new-ui", {}, "x")).toBe("x"); // not in this bundle
    for (const c of vectors.flags) expect([c.flag, client.details(c.flag, c.context).variant]).toEqual([c.flag, c.variant]);
    for (const a of vectors.assignments) expect([a.experiment, client.arm(a.experiment, a.context)]).toEqual([a.experiment, a.arm]);
  });
});

describe("the package", () => {
  it("marks every entry point that adds a part as having side effects, so bundlers keep its import", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    const adding = readdirSync(new URL("../src/", import.meta.url))
      .filter((name) => /\.tsx?$/.test(name))
      .filter((name) => /^(parts\.\w+ \?\?=|parts\.\w+ =|Object\.assign\(OPERATORS|import "\.\/\w+\.js";)/m.test(readFileSync(new URL(`../src/${name}`, import.meta.url), "utf8")))
      .map((name) => name.replace(/\.tsx?$/, ""));
    expect(adding.sort()).toEqual(["consent", "dates", "experiments", "full", "prerequisites", "regex", "semver"]);
    for (const name of adding) {
      expect(pkg.sideEffects).toContain(`./src/${name}.ts`);
      expect(pkg.sideEffects).toContain(`./dist/${name}.js`);
      expect(pkg.exports[`./${name}`]).toEqual({ types: `./dist/${name}.d.ts`, import: `./dist/${name}.js` });
    }
  });
});
