/**
 * The parts with entry points of their own (dates, semver, the consent counts): the core
 * alone refuses a bundle that uses one at load, naming the flag (or segment, experiment),
 * the operator and the import, and never answers from it; importing the entry point makes
 * the same bundle load synchronously. Only the core is imported here, and the tests run in
 * order: the refusals first, then each entry point.
 */
import { describe, expect, it } from "vitest";
import { BundleError, Client, compileBundle } from "../src/index.js";
import { readVectors } from "./vectors.js";

const flag = (when: unknown): any => ({ default: { variant: "off" }, enabled: true, prerequisites: [], rules: [{ when, serve: { variant: "on" } }], salt: "f", targets: {}, unit: "user_id", variants: { on: true, off: false } });
const bundleOf = (parts: Record<string, unknown>): any => ({ format: "flagstone-bundle", version: 1, hash: null, environment: "prod", flags: {}, segments: {}, experiments: {}, config: {}, ...parts });

const dated = bundleOf({ flags: { launch: flag({ attr: "signup", op: "after", value: "2026-10-01" }) } });
const versioned = bundleOf({ segments: { modern: { when: { attr: "app_version", op: "semver_gte", value: "3.2.0" } } }, flags: { "new-ui": flag({ segment: "modern" }) } });
const audience = bundleOf({ experiments: { trial: { arms: [{ end: 10_000, variant: "on" }], consent_required: false, flag: "launch", salt: "trial", status: "running", traffic: 10_000, unit: "user_id", audience: { attr: "v", op: "semver_lt", value: "1.0.0" } } }, flags: { launch: { ...flag({ attr: "x", op: "exists", value: true }), experiment: "trial" } } });
const consenting = bundleOf({
  experiments: { onboarding: { arms: [{ end: 5000, variant: "on" }, { end: 10_000, variant: "off" }], consent_required: true, flag: "launch", salt: "onboarding", status: "running", traffic: 10_000, unit: "user_id" } },
  flags: { launch: { ...flag({ attr: "x", op: "exists", value: true }), experiment: "onboarding" } },
});

const load = (bundle: unknown, options: Record<string, unknown> = {}): [Client, Error[]] => {
  const errors: Error[] = [];
  return [new Client({ bundle, onError: (e) => errors.push(e), ...options }), errors];
};
const IMPORT = ', which needs import "@flagstone/client/';

describe("the core without a part's entry point", () => {
  it("refuses a bundle using before/after, naming the flag, the operator and the import", async () => {
    const [client, errors] = load(dated);
    expect(await client.ready).toBe(false);
    expect(errors.map((e) => [e.name, e.message])).toEqual([["BundleError", `flag 'launch' uses the operator 'after'${IMPORT}dates" (or "@flagstone/client/full"); Client.load and a url import it themselves`]]);
    expect(client.lastError).toBe(errors[0].message);
    // never an answer from the refused bundle
    expect(client.variant("launch", { signup: "2026-11-01" }, "fallback")).toBe("fallback");
    expect(() => compileBundle(dated)).toThrow(BundleError);
  });

  it("refuses semver in a segment and in an experiment's audience, naming where", () => {
    expect(load(versioned)[0].lastError).toBe(`segment 'modern' uses the operator 'semver_gte'${IMPORT}semver" (or "@flagstone/client/full"); Client.load and a url import it themselves`);
    expect(load(audience)[0].lastError).toMatch(/^experiment 'trial' uses the operator 'semver_lt', which needs import "@flagstone\/client\/semver"/);
  });

  it("refuses a consent-required experiment only for a client that counts (onConsentNotGiven)", () => {
    const [counting] = load(consenting, { onConsentNotGiven: () => {} });
    expect(counting.lastError).toBe(
      `experiment 'onboarding' uses consent: required with onConsentNotGiven (flag 'launch')${IMPORT}consent" (or "@flagstone/client/full"); Client.load and a url import it themselves`,
    );
    const [plain, errors] = load(consenting);
    expect(errors).toEqual([]);
    expect(plain.assign("onboarding", { user_id: "u-1", x: 1 })).toBeNull(); // no consent: left out, as before
    expect(plain.assign("onboarding", { user_id: "u-1", x: 1, consent: true })).toMatch(/^(on|off)$/);
  });

  it("an unknown operator is still an unknown operator", () => {
    expect(load(bundleOf({ flags: { f: flag({ attr: "a", op: "semver_near", value: "1.0.0" }) } }))[0].lastError).toBe("unknown operator semver_near");
  });
});

describe("each part's entry point", () => {
  const vectors = readVectors("vectors.json");

  it("@flagstone/client/dates: bundles with before/after load synchronously", async () => {
    await import("../src/dates.js");
    const [client, errors] = load(dated);
    expect(errors).toEqual([]);
    expect([client.variant("launch", { signup: "2026-11-01T00:00:00+01:00" }), client.variant("launch", { signup: "2026-09-30" })]).toEqual(["on", "off"]);
    expect(load(versioned)[0].lastError).toMatch(/needs import "@flagstone\/client\/semver"/);
  });

  it("@flagstone/client/semver: with dates, the conformance bundle loads and agrees with every vector", async () => {
    await import("../src/semver.js");
    const [client, errors] = load(vectors.bundle);
    expect(errors).toEqual([]);
    expect(client.variant("new-ui", {}, "x")).toBe("x"); // not in this bundle
    for (const c of vectors.flags) expect([c.flag, client.details(c.flag, c.context).variant]).toEqual([c.flag, c.variant]);
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
});
